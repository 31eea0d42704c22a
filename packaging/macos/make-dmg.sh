#!/usr/bin/env bash
# Build Hearth.app and a drag-to-Applications disk image on macOS.
#
#   bash packaging/macos/make-dmg.sh
#
# Needs the .venv set up (bash packaging/bootstrap.sh test, or see
# packaging/README.md) with a Metal build of llama-cpp-python on Apple Silicon
# (bash packaging/llama-build.sh metal --install). Writes dist/Hearth-<version>.dmg.
#
# Signing: by default the app is signed ad hoc, which runs on the build Mac
# and, after the person allows it in System Settings > Privacy & Security, on
# others. For a download that opens without warnings set CODESIGN_IDENTITY
# ("Developer ID Application: ...") and NOTARY_PROFILE (a `xcrun notarytool
# store-credentials` profile); the script then signs with the hardened
# runtime, notarizes and staples.
set -euo pipefail

[ "$(uname -s)" = Darwin ] || { echo "make-dmg: run this on macOS" >&2; exit 1; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$here"
vpy="$here/.venv/bin/python"
version="$("$vpy" -c 'from app.version import __version__; print(__version__)')"
dist="$here/dist/macos"

"$vpy" -m PyInstaller --noconfirm --log-level=WARN \
  --workpath "$here/build/macos" --distpath "$dist" packaging/hearth.spec
app="$dist/Hearth.app"
[ -d "$app" ] || { echo "make-dmg: PyInstaller made no $app" >&2; exit 1; }

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  codesign --force --deep --options runtime --timestamp \
    --entitlements packaging/macos/entitlements.plist --sign "$CODESIGN_IDENTITY" "$app"
else
  codesign --force --deep --sign - "$app"
fi
codesign --verify --deep --strict "$app"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
dmg="$here/dist/Hearth-$version.dmg"
rm -f "$dmg"
hdiutil create -volname "Hearth $version" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$dmg"

if [ -n "${CODESIGN_IDENTITY:-}" ] && [ -n "${NOTARY_PROFILE:-}" ]; then
  codesign --sign "$CODESIGN_IDENTITY" --timestamp "$dmg"
  xcrun notarytool submit "$dmg" --keychain-profile "$NOTARY_PROFILE" --wait
  xcrun stapler staple "$dmg"
fi
echo "$dmg"
