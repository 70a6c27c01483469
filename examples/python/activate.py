"""A product in Python that embeds volact through ctypes: opens its licence with the
vendor's bundle, installs its setup key, activates against a host, checks, and prints
the state.

    python3 activate.py LIBVOLACT STATE_FILE VENDOR_BUNDLE SETUP_KEY HOST[:PORT]

LIBVOLACT is the shared library (libvolact.so, volact.dll, libvolact.dylib).
"""

import ctypes
import json
import sys

OK = 0
LICENSED = 0
NO_SETUP_KEY = 4


class Check(ctypes.Structure):
    """struct VolactCheck of include/volact.h."""

    _fields_ = [
        ("state", ctypes.c_int),
        ("reason", ctypes.c_int),
        ("until", ctypes.c_int64),
        ("renew_after", ctypes.c_int64),
    ]


CALLBACK = ctypes.CFUNCTYPE(None, ctypes.POINTER(Check), ctypes.c_void_p)


def load(path):
    lib = ctypes.CDLL(path)
    lib.volact_version.restype = ctypes.c_char_p
    lib.volact_open.argtypes = [
        ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
        ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p),
    ]
    lib.volact_open.restype = ctypes.c_int
    lib.volact_close.argtypes = [ctypes.c_void_p]
    lib.volact_close.restype = None
    for name in ("volact_install_key", "volact_set_host", "volact_set_domain"):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        fn.restype = ctypes.c_int
    lib.volact_activate_now.argtypes = [ctypes.c_void_p]
    lib.volact_activate_now.restype = ctypes.c_int
    lib.volact_check.argtypes = [ctypes.c_void_p, ctypes.POINTER(Check)]
    lib.volact_check.restype = ctypes.c_int
    lib.volact_check_json.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.volact_check_json.restype = ctypes.c_int
    lib.volact_on_change.argtypes = [ctypes.c_void_p, CALLBACK, ctypes.c_void_p]
    lib.volact_on_change.restype = ctypes.c_int
    lib.volact_last_error_message.restype = ctypes.c_void_p
    lib.volact_string_free.argtypes = [ctypes.c_void_p]
    lib.volact_string_free.restype = None
    for name in ("volact_status_name", "volact_state_name", "volact_reason_name"):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_int]
        fn.restype = ctypes.c_char_p
    return lib


class VolactError(Exception):
    pass


def take_string(lib, pointer):
    """Copies a string the library returned and frees it."""
    if not pointer:
        return None
    try:
        return ctypes.string_at(pointer).decode("utf-8")
    finally:
        lib.volact_string_free(pointer)


def checked(lib, what, status):
    if status != OK:
        message = take_string(lib, lib.volact_last_error_message())
        raise VolactError(f"{what}: {lib.volact_status_name(status).decode()} ({message})")


def main(argv):
    if len(argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    lib = load(argv[1])
    print("volact", lib.volact_version().decode())
    with open(argv[3], "rb") as f:
        bundle = f.read()
    handle = ctypes.c_void_p()
    checked(lib, "volact_open", lib.volact_open(
        b"demo-office", argv[2].encode(), bundle, len(bundle), None, None,
        ctypes.byref(handle)))
    changes = []

    @CALLBACK
    def on_change(check, _user_data):
        changes.append(lib.volact_state_name(check.contents.state).decode())

    try:
        checked(lib, "volact_on_change", lib.volact_on_change(handle, on_change, None))
        check = Check()
        checked(lib, "volact_check", lib.volact_check(handle, ctypes.byref(check)))
        if check.reason == NO_SETUP_KEY:
            checked(lib, "volact_install_key", lib.volact_install_key(handle, argv[4].encode()))
        checked(lib, "volact_set_host", lib.volact_set_host(handle, argv[5].encode()))
        checked(lib, "volact_activate_now", lib.volact_activate_now(handle))
        checked(lib, "volact_check", lib.volact_check(handle, ctypes.byref(check)))
        out = ctypes.c_void_p()
        checked(lib, "volact_check_json", lib.volact_check_json(handle, ctypes.byref(out)))
        details = json.loads(take_string(lib, out.value))
        print("state=%s reason=%s until=%s" % (
            lib.volact_state_name(check.state).decode(),
            lib.volact_reason_name(check.reason).decode(),
            details["until"],
        ))
        print("client_id=%s changes=%s" % (details["client_id"], ",".join(changes)))
        return 0 if check.state == LICENSED else 1
    except VolactError as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        lib.volact_close(handle)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
