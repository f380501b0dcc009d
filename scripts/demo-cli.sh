#!/usr/bin/env bash
# The OpenLedger story with `openledger` commands only (no SDK code, no curl): against a platform
# started with `npm start` (same environment: ports, CHAIN_RPC_URL, CHAIN_ADDRESSES_FILE,
# SETTLEMENT_ADMIN_TOKEN to close the epoch at once instead of waiting for its schedule).
#
#   scripts/demo-cli.sh            # prints each command and its output
#   DEMO_OUT=dir scripts/demo-cli.sh   # also leaves each step's --json output in dir (the test reads it)
#
# Keys: each person gets a fresh encrypted keystore (openledger account new) funded by the local
# chain's faucet (openledger dev faucet); validators and the treasury are the dev deployment's
# Hardhat accounts (--dev-account). Exit status: the first failing command's (see openledger --help).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OL="$ROOT/node_modules/.bin/openledger"
RUN="${RUN_ID:-$(date +%s)}"
OUT="${DEMO_OUT:-$(mktemp -d)}"
WORK="$(mktemp -d)"
mkdir -p "$OUT"
export OPENLEDGER_HOME="$WORK/home"
# Throwaway keys of a local demo; a real user types the password at the prompt instead.
export OPENLEDGER_KEYSTORE_PASSWORD="${OPENLEDGER_KEYSTORE_PASSWORD:-demo-password-$RUN}"
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ openledger %s\n' "$*" | sed -E 's/(--keystore )[^ ]+\/([a-z]+)\.json/\1\2.json/'; }
# ol NAME ARGS...: run as NAME's keystore, print the human output.
ol() { local who="$1"; shift; show "--keystore $WORK/$who.json $*"; "$OL" --keystore "$WORK/$who.json" "$@"; }
# olj NAME FILE ARGS...: the same with --json, kept in $OUT/FILE.json (and printed).
olj() {
  local who="$1" file="$2"; shift 2
  show "--keystore $WORK/$who.json --json $*"
  "$OL" --keystore "$WORK/$who.json" --json "$@" | tee "$OUT/$file.json"
}
dev() { local n="$1"; shift; show "--dev-account $n $*"; "$OL" --dev-account "$n" "$@"; }
field() { jq -r "$2" "$OUT/$1.json"; }

step "0. The platform answers"
"$OL" status

step "1. Everyone gets a key (encrypted keystore) and, on the local chain, OPEN from the faucet"
for who in owner alice bob builder consumer; do
  show "account new --light --out $who.json"
  "$OL" --json account new --light --out "$WORK/$who.json" >"$OUT/account-$who.json"
  echo "$who: $(field "account-$who" .address)"
  ol "$who" dev faucet --open 5000
done

step "2. The owner signs in (SIWE) and creates a datanet (registered on chain)"
ol owner signin
olj owner datanet datanet create --slug "reviews-$RUN" --name "Kitchen and outdoor reviews" \
  --type classification --license CC-BY-4.0 --tags reviews,sentiment --min-stake 100
DATANET="reviews-$RUN"

step "3. Contributors stake OPEN on the datanet"
ol alice datanet stake "$DATANET" 150
ol bob datanet stake "$DATANET" 120

step "4. Contributors upload labelled rows (streamed files); duplicates are rejected"
cat >"$WORK/alice.jsonl" <<'EOF'
{"text":"The cast iron skillet arrived seasoned and heats evenly across the whole surface, searing steaks beautifully.","label":"positive"}
{"text":"This kettle whistles loudly when the water boils, and the handle stays cool enough to pour without a towel.","label":"positive"}
{"text":"After two weeks the blender jar cracked near the base and started leaking sticky smoothie onto the counter.","label":"negative"}
{"text":"Our new chef knife keeps a sharp edge through onions, tomatoes and crusty bread without any sharpening at all.","label":"positive"}
{"text":"The toaster burns one side of every slice while leaving the other pale, no matter which setting we choose.","label":"negative"}
{"text":"A sturdy wooden cutting board that resists deep grooves and cleans up quickly with warm soapy water.","label":"positive"}
{"text":"The rice cooker lid rattles constantly and the bottom layer of grains turns into a crunchy scorched crust.","label":"negative"}
EOF
cat >"$WORK/bob.csv" <<'EOF'
text,label
"This tent pitched in five minutes during a windy evening and kept every sleeping bag dry through heavy rain.",positive
"The hiking boots gave me blisters on the first short trail and the sole started peeling within a month.",negative
"A lightweight camping stove that boils water fast and packs down small enough to fit inside the pot.",positive
"The sleeping pad slowly deflates every night, so by morning I am lying directly on the cold hard ground.",negative
"This headlamp throws a bright wide beam and the battery lasted through three nights of camping easily.",positive
"The water filter clogged after a few liters of stream water and pumping became almost impossible.",negative
"The cast iron skillet arrived seasoned and heats evenly across the whole surface, searing steaks beautifully.",positive
EOF
olj alice contribute-alice datanet contribute "$DATANET" "$WORK/alice.jsonl"
olj bob contribute-bob datanet contribute "$DATANET" "$WORK/bob.csv"

step "5. The owner publishes a version (merkle root on chain); the attribution index is built"
olj owner publish datanet publish "$DATANET"
VERSION="$(field publish .version.id)"

step "6. A builder gets an API key by signature, registers the version's classifier (owner-approved) and a LoRA adapter"
ol builder keys create --name demo
BUILDER="$(field account-builder .address)"
show "--keystore owner.json --json datanet approve $DATANET $BUILDER"
"$OL" --keystore "$WORK/owner.json" --json datanet approve "$DATANET" "$BUILDER" >"$WORK/approval.json"
olj builder model model register "$VERSION" --id "sentiment-$RUN" --price-in 3000000000000000017wei \
  --price-out 7000000000000000013wei --approval "$WORK/approval.json"
ol builder dev random-adapter --out "$WORK/adapter" --seed "demo-$RUN"
olj builder adapter adapter upload "$WORK/adapter" --id "reviews-lora-$RUN" --price-in 2000000000000000007wei \
  --price-out 5000000000000000011wei --version "$VERSION"

step "6b. The builder fine-tunes a LoRA adapter on the datanet (ModelFactory); the fee is held in its escrow, paid to the contributors"
ol builder escrow deposit 10
olj builder finetune finetune create --datanet "$DATANET" --suffix "demo" --seed 7 --epochs 1 --batch-size 2 \
  --seq-len 32 --rank 4 --max-steps 4 --price-in 1000000000000000003wei --price-out 2000000000000000005wei
FT_JOB="$(field finetune .id)"
FT_MODEL="$(field finetune .fine_tuned_model)"
olj builder finetune-settled finetune show "$FT_JOB" --wait-settled --events 5

step "7. A consumer deposits OPEN into the escrow, gets an API key and calls the three models"
ol consumer escrow deposit 20
ol consumer keys create --name demo
olj consumer chat1 chat "sentiment-$RUN" "The cast iron skillet heats evenly and sears steaks beautifully; a sturdy pan that cleans up quickly."
olj consumer chat2 chat "sentiment-$RUN" "The headlamp battery died after barely an hour and the strap slipped, and the water filter clogged too."
olj consumer chat3 chat "reviews-lora-$RUN" "Write a short review of a cast iron skillet." --max-tokens 16
olj consumer chat4 chat "$FT_MODEL" "The cast iron skillet arrived seasoned" --max-tokens 16
INFERENCES=("$(field chat1 .inferenceId)" "$(field chat2 .inferenceId)" "$(field chat3 .inferenceId)" "$(field chat4 .inferenceId)")

step "8. Validators attribute each inference; settlement splits each fee"
for i in 0 1 2 3; do
  olj consumer "attribution$((i + 1))" attribution show "${INFERENCES[$i]}" --wait >/dev/null
  ol consumer attribution show "${INFERENCES[$i]}"
done

step "9. The epoch closes: a merkle root of cumulative earnings is posted on chain"
if [[ -n "${SETTLEMENT_ADMIN_TOKEN:-}" ]]; then
  olj consumer epoch epoch close --wait-for "${INFERENCES[@]}" "$(field finetune-settled .settlement.inferenceId)"
else
  echo "(no SETTLEMENT_ADMIN_TOKEN: the claims below wait for the scheduled epoch)"
fi

step "10. Everyone paid claims with the settlement service's proof"
# claim LABEL [--wait] KEY-OPTIONS...: what the ledger says it earned, then the claim, then the new state.
claim() {
  local label="$1" wait=""; shift
  if [[ "$1" == "--wait" ]]; then wait="--wait"; shift; fi
  show "$* claim $wait"
  "$OL" "$@" --json claim $wait >"$OUT/claim-$label.json"
  show "$* earnings"
  "$OL" "$@" --json earnings >"$OUT/earnings-$label.json"
  "$OL" "$@" earnings
}
# alice's rows drove the classifier's answers: her claim waits for the epoch (scheduled, or closed above).
claim alice --wait --keystore "$WORK/alice.json"
for who in bob builder; do claim "$who" --keystore "$WORK/$who.json"; done
claim treasury --dev-account 3
for v in 5 6 7; do claim "validator$v" --dev-account "$v"; done

step "Done"
echo "outputs in $OUT"
