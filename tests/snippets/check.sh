#!/usr/bin/env bash
# Compile the README's phone snippets against the API surface they call (opt-in; tests/test_snippets.py runs it
# where the compilers are installed). Needs: Debian's kotlin (kotlinc), a JDK (javac), clang and GNUstep's
# Foundation headers:  apt-get install kotlin default-jdk-headless clang libgnustep-base-dev
# stubs/java: the signatures of LiteRT's and ONNX Runtime's Java APIs and of android.graphics.Bitmap that the
# snippets call; stubs/objc: the same for ONNX Runtime's Objective-C API (from each API's reference documentation).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
javac -nowarn -d "$work/stubs" $(find "$here/stubs/java" -name '*.java')
stdlib="$(ls /usr/share/java/kotlin-stdlib*.jar | tr '\n' ':')"
if ! kotlinc -nowarn -cp "$work/stubs:$stdlib" "$here"/android/*.kt -d "$work/kotlin" > "$work/kotlinc.log" 2>&1; then
    grep -v '^OpenJDK .* warning' "$work/kotlinc.log"; exit 1
fi
gcc_include="$(dirname "$(gcc -print-libgcc-file-name)")/include"
cd "$work"   # gnustep-config's flags write a dependency file into the current folder
clang -fsyntax-only -Werror -Wno-nullability-completeness -fobjc-runtime=gcc -x objective-c \
    $(gnustep-config --objc-flags) -I"$gcc_include" -I"$here/stubs/objc" "$here"/ios/*.m
echo "snippets compile: $(ls "$here"/android/*.kt "$here"/ios/*.m | xargs -n1 basename | tr '\n' ' ')"
