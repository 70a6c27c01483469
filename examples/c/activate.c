/* A product in C that embeds volact: opens its licence with the vendor's bundle,
 * installs its setup key, activates against a host, checks, and prints the state.
 *
 *   activate STATE_FILE VENDOR_BUNDLE SETUP_KEY HOST[:PORT]
 *
 * A real product compiles the vendor bundle in (e.g. with `xxd -i vendor.pub`) and
 * finds its host through DNS; both are arguments here so the tests can run it against
 * a host on loopback. Build: cc activate.c -I include libvolact.a -lpthread -ldl -lm
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "volact.h"

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 4096;
            unsigned char *grown = realloc(buf, cap);
            if (!grown) { free(buf); fclose(f); return NULL; }
            buf = grown;
        }
        size_t n = fread(buf + *len, 1, cap - *len, f);
        if (n == 0) break;
        *len += n;
    }
    fclose(f);
    return buf;
}

/* Prints the failure of the last call and returns its status. */
static int fail(const char *what, VolactStatus status) {
    char *message = volact_last_error_message();
    /* The message starts with the stable code (the status's name). */
    fprintf(stderr, "%s failed: %s\n", what, message ? message : volact_status_name(status));
    volact_string_free(message);
    return (int)status;
}

static void print_check(const char *when, const VolactCheck *check) {
    printf("%s: state=%s reason=%s", when, volact_state_name(check->state),
           volact_reason_name(check->reason));
    if (check->until) {
        time_t until = (time_t)check->until;
        char text[32];
        strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", gmtime(&until));
        printf(" until=%s", text);
    }
    printf("\n");
}

static void on_change(const VolactCheck *check, void *user_data) {
    int *changes = user_data;
    *changes += 1;
    print_check("changed", check);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s STATE_FILE VENDOR_BUNDLE SETUP_KEY HOST[:PORT]\n", argv[0]);
        return 2;
    }
    printf("volact %s\n", volact_version());
    size_t bundle_len = 0;
    unsigned char *bundle = read_file(argv[2], &bundle_len);
    if (!bundle) {
        fprintf(stderr, "cannot read the vendor bundle %s\n", argv[2]);
        return 2;
    }

    VolactLicense *license = NULL;
    VolactStatus status = volact_open("demo-office", argv[1], bundle, bundle_len, NULL, NULL, &license);
    free(bundle);
    if (status != VOLACT_STATUS_OK) return fail("volact_open", status);

    int changes = 0;
    volact_on_change(license, on_change, &changes);

    VolactCheck check;
    volact_check(license, &check);
    print_check("at start", &check);
    if (check.reason == VOLACT_REASON_NO_SETUP_KEY) {
        status = volact_install_key(license, argv[3]);
        if (status != VOLACT_STATUS_OK) { volact_close(license); return fail("volact_install_key", status); }
    }
    status = volact_set_host(license, argv[4]);
    if (status != VOLACT_STATUS_OK) { volact_close(license); return fail("volact_set_host", status); }

    status = volact_activate_now(license);
    if (status != VOLACT_STATUS_OK) { volact_close(license); return fail("volact_activate_now", status); }

    volact_check(license, &check);
    print_check("after activation", &check);
    char *json = NULL;
    if (volact_check_json(license, &json) == VOLACT_STATUS_OK) {
        printf("json: %s\n", json);
        volact_string_free(json);
    }
    printf("changes seen: %d\n", changes);
    volact_close(license);
    return check.state == VOLACT_STATE_LICENSED ? 0 : 1;
}
