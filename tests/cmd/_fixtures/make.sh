#!/bin/sh
# Regenerates the fixture stores of the CLI snapshot cases (tests/cmd/) with
# a built meshseal binary, from the repository root:
#
#   sh tests/cmd/_fixtures/make.sh target/debug/meshseal
#
# then re-bless the cases: TRYCMD=overwrite cargo test --test integration cli_snapshots
#
# The identities made here are TEST-ONLY keys: committed on purpose, they
# protect nothing and must never encrypt anything real.
set -eu
bin=$(realpath "$1")
cd "$(dirname "$0")"
rm -rf keys store stale moved plaintext badrecipients badconfig .env
mkdir -p keys store .env/home .env/config
ms() { HOME="$PWD/.env/home" XDG_CONFIG_HOME="$PWD/.env/config" MESHSEAL_IDENTITY= "$bin" "$@"; }

keygen() {
    ms keygen -o "keys/$1.txt" >/dev/null 2>&1
    { echo "# TEST-ONLY identity for tests/cmd snapshot cases: committed on purpose,"
      echo "# it protects nothing; never use it for a real secret."
      cat "keys/$1.txt"; } > "keys/$1.tmp"
    mv "keys/$1.tmp" "keys/$1.txt"
}
keygen test-only-identity
keygen test-only-stranger
cp keys/test-only-identity.txt keys/test-only-world-readable.txt
echo "# TEST-ONLY: not a key at all" > keys/test-only-not-a-key.txt
# The modes git cannot keep; cli_snapshots.rs sets them again before a run.
chmod 600 keys/test-only-identity.txt keys/test-only-stranger.txt keys/test-only-not-a-key.txt
chmod 644 keys/test-only-world-readable.txt
public=$(sed -n 's/^# public key: //p' keys/test-only-identity.txt)
stranger=$(sed -n 's/^# public key: //p' keys/test-only-stranger.txt)

# store: meshes default and payments, a global secret, a policy using
# payments/psp-ca, all encrypted to the test-only identity.
(
    cd store
    ms init --recipient "$public" >/dev/null 2>&1
    ms recipients add -m payments "$public" >/dev/null 2>&1
    ms create secret db-password -m payments --from-literal test-only-value >/dev/null
    ms create secret psp-ca -m payments --from-literal test-only-ca >/dev/null
    ms create secret api-token -m default --from-literal test-only-token >/dev/null
    ms create global-secret admin-token --from-literal test-only-global >/dev/null
    mkdir -p meshes/payments/policies
    cat > meshes/payments/policies/psp.toml <<'TOML'
type = "ExternalService"
mesh = "payments"
name = "psp"

[networking]
address = "psp.example:443"

[networking.tls]
caCert = { secret = "psp-ca" }
TOML
)

# stale: payments gained a recipient after its secrets were written.
cp -R store stale
echo "$stranger" >> stale/meshes/payments/recipients.txt

# moved: a payments ciphertext copied into default, one renamed.
cp -R store moved
cp moved/meshes/payments/secrets/db-password.age moved/meshes/default/secrets/db-password.age
mv moved/meshes/default/secrets/api-token.age moved/meshes/default/secrets/renamed.age

# plaintext: a secret document written without encryption, and a stray file.
cp -R store plaintext
printf 'type = "Secret"\nmesh = "default"\nname = "leak"\ndata = "dGVzdC1vbmx5"\n' \
    > plaintext/meshes/default/secrets/leak.age
echo notes > plaintext/meshes/default/secrets/notes.txt

# badrecipients: a payments recipients file with a line that is not a key.
cp -R store badrecipients
echo not-a-key >> badrecipients/meshes/payments/recipients.txt

# badconfig: a store config with a key meshseal does not know.
cp -R store badconfig
echo 'colour = "red"' >> badconfig/meshseal.toml

rm -rf .env
