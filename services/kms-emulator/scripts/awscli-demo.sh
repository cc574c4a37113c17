#!/usr/bin/env bash
# A second, independent KMS client against the emulator: the AWS CLI creates an Ed25519 key (admin
# credentials), signs and verifies a 32-byte hash (node credentials), OpenSSL checks the signature against the
# public key, and the least-privilege refusals come back with AWS's error names.
#
#   services/kms-emulator/scripts/awscli-demo.sh [ENDPOINT_URL ACCOUNTS_FILE]
#
# With no arguments it starts its own emulator in a temporary directory and stops it on exit. Needs `aws`
# (Debian package awscli, or AWS CLI v1/v2 from anywhere: set AWS_CLI to pick one), `openssl` and `node`.
set -euo pipefail

AWS=${AWS_CLI:-aws}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=$(mktemp -d)
emulator_pid=
cleanup() {
  if [ -n "$emulator_pid" ]; then kill "$emulator_pid" 2>/dev/null || true; wait "$emulator_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ $# -ge 2 ]; then
  url=$1
  accounts=$2
else
  node "$root/apps/cli/bin/cosigner.js" kms-emulator --port 0 --data-dir "$work/kms" \
    --ready-file "$work/ready.json" >"$work/emulator.log" 2>&1 &
  emulator_pid=$!
  for _ in $(seq 1 600); do [ -s "$work/ready.json" ] && break; kill -0 "$emulator_pid" 2>/dev/null || break; sleep 0.1; done
  [ -s "$work/ready.json" ] || { echo "awscli-demo: the emulator did not start" >&2; cat "$work/emulator.log" >&2; exit 1; }
  url=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).url)' "$work/ready.json")
  accounts=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).accountsFile)' "$work/ready.json")
fi

# principal ROLE ACCOUNT_INDEX FIELD: a credential of the accounts file.
principal() {
  node -e 'const a = JSON.parse(require("fs").readFileSync(process.argv[1])).accounts[+process.argv[3]];
    console.log(a.principals.find((p) => p.role === process.argv[2])[process.argv[4]]);' "$accounts" "$1" "$2" "$3"
}

# as ROLE ACCOUNT_INDEX aws-args...: run the CLI with that principal's credentials and no local AWS profile.
as() {
  local role=$1 index=$2
  shift 2
  env -u AWS_PROFILE -u AWS_SESSION_TOKEN \
    AWS_ACCESS_KEY_ID="$(principal "$role" "$index" accessKeyId)" \
    AWS_SECRET_ACCESS_KEY="$(principal "$role" "$index" secretAccessKey)" \
    AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE="$work/none" AWS_SHARED_CREDENTIALS_FILE="$work/none" \
    AWS_PAGER="" AWS_EC2_METADATA_DISABLED=true AWS_MAX_ATTEMPTS=1 \
    "$AWS" --endpoint-url "$url" --output text "$@"
}

# expect_error NAME command...: the command must fail with that AWS error name.
expect_error() {
  local name=$1
  shift
  if "$@" >"$work/out" 2>"$work/err"; then echo "awscli-demo: expected $name, the call succeeded" >&2; exit 1; fi
  grep -q "$name" "$work/err" || { echo "awscli-demo: expected $name, got:" >&2; cat "$work/err" >&2; exit 1; }
  echo "refused as expected: $name"
}

echo "AWS CLI: $("$AWS" --version 2>&1)"
key=$(as admin 0 kms create-key --key-spec ECC_NIST_EDWARDS25519 --key-usage SIGN_VERIFY \
  --description "awscli demo" --query KeyMetadata.KeyId)
echo "created key $key"

as node 0 kms get-public-key --key-id "$key" --query PublicKey | base64 -d >"$work/pub.der"
[ "$(wc -c <"$work/pub.der")" -eq 44 ] || { echo "awscli-demo: public key is not 44-byte DER SPKI" >&2; exit 1; }

head -c 32 /dev/urandom >"$work/hash.bin"
as node 0 kms sign --key-id "$key" --message "fileb://$work/hash.bin" --message-type RAW \
  --signing-algorithm ED25519_SHA_512 --query Signature | base64 -d >"$work/sig.bin"
[ "$(wc -c <"$work/sig.bin")" -eq 64 ] || { echo "awscli-demo: signature is not 64 bytes" >&2; exit 1; }
echo "signed a 32-byte hash"

valid=$(as node 0 kms verify --key-id "$key" --message "fileb://$work/hash.bin" --message-type RAW \
  --signature "fileb://$work/sig.bin" --signing-algorithm ED25519_SHA_512 --query SignatureValid)
[ "$valid" = "True" ] || { echo "awscli-demo: kms verify said $valid" >&2; exit 1; }
echo "kms verify: $valid"

openssl pkeyutl -verify -pubin -inkey "$work/pub.der" -keyform DER -rawin -in "$work/hash.bin" \
  -sigfile "$work/sig.bin" >/dev/null
echo "openssl verifies the signature under the KMS public key"

head -c 32 /dev/zero >"$work/other.bin"
expect_error KMSInvalidSignatureException as node 0 kms verify --key-id "$key" --message "fileb://$work/other.bin" \
  --message-type RAW --signature "fileb://$work/sig.bin" --signing-algorithm ED25519_SHA_512
expect_error AccessDeniedException as node 0 kms create-key --key-spec ECC_NIST_EDWARDS25519 --key-usage SIGN_VERIFY
expect_error AccessDeniedException as node 0 kms schedule-key-deletion --key-id "$key"
arn=$(as admin 0 kms describe-key --key-id "$key" --query KeyMetadata.Arn)
expect_error AccessDeniedException as admin 1 kms sign --key-id "$arn" --message "fileb://$work/hash.bin" \
  --message-type RAW --signing-algorithm ED25519_SHA_512
expect_error ValidationException as node 0 kms sign --key-id "$key" --message "fileb://$work/hash.bin" \
  --message-type RAW --signing-algorithm ED25519_PH_SHA_512
echo "awscli-demo: ok"
