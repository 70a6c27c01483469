#!/usr/bin/env bash
# What embedding volact adds to a C product: the C example linked against the release
# static library, stripped, against a stripped "hello" built the same way; and the size
# of the shared library. Usage: scripts/ffi-size.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p volact-ffi >/dev/null 2>&1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
printf '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n' >"$tmp/hello.c"
cc -O2 -o "$tmp/hello" "$tmp/hello.c"
cc -O2 -std=c99 -o "$tmp/activate" examples/c/activate.c -I include \
  target/release/libvolact.a $libs -Wl,--gc-sections
strip "$tmp/hello" "$tmp/activate"
cp target/release/libvolact.so "$tmp/libvolact.so" && strip "$tmp/libvolact.so"
size() { stat -c %s "$1"; }
hello=$(size "$tmp/hello")
activate=$(size "$tmp/activate")
echo "hello (stripped):                      $hello bytes"
echo "C example + libvolact.a (stripped):    $activate bytes"
echo "added by the static library:           $((activate - hello)) bytes ($(( (activate - hello) / 1024 / 1024 )) MiB)"
echo "libvolact.so (stripped):               $(size "$tmp/libvolact.so") bytes"
echo "libvolact.a (as built, unstripped):    $(size target/release/libvolact.a) bytes"
