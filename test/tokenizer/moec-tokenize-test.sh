#!/bin/sh
# `moec tokenize` end to end: stdin byte-exact (trailing newline kept), ids
# from HuggingFace tokenizers, --decode back to the same bytes,
# --add-special from tokenizer_config.json, and one-line errors.
# Usage: moec-tokenize-test.sh MOEC DATA_DIR
set -eu
moec=$1
data=$2
tok() { "$moec" tokenize "$@"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

printf '<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n' >"$work/chat.txt"
ids=$(tok "$data/qwen3" <"$work/chat.txt")
[ "$ids" = "151644 872 198 13048 1052 151645 198 151644 77091 198" ] ||
  fail "qwen3 ids: $ids"
echo "$ids" | tok "$data/qwen3/tokenizer.json" --decode >"$work/back.txt"
cmp -s "$work/chat.txt" "$work/back.txt" || fail "qwen3 decode is not byte-exact"

printf '' | tok "$data/llama3" >"$work/empty.txt"
[ "$(cat "$work/empty.txt")" = "" ] || fail "empty input gave ids"

ids=$(printf 'Hello' | tok "$data/deepseek_v3" --add-special)
case "$ids" in 0\ *) ;; *) fail "deepseek --add-special: $ids" ;; esac
ids=$(printf 'Hello' | tok "$data/deepseek_v3")
case "$ids" in 0\ *) fail "bos without --add-special: $ids" ;; esac

if tok "$work/missing.json" </dev/null 2>"$work/err.txt"; then
  fail "missing file accepted"
fi
grep -q "missing.json" "$work/err.txt" || fail "error does not name the file"
printf '{"model": {"type": "WordPiece"}}' >"$work/bad.json"
if tok "$work/bad.json" </dev/null 2>"$work/err.txt"; then
  fail "bad tokenizer.json accepted"
fi
grep -q "bad.json: model.type" "$work/err.txt" || fail "error: $(cat "$work/err.txt")"
if echo "12 x" | tok "$data/llama3" --decode 2>"$work/err.txt"; then
  fail "bad id accepted"
fi
echo PASS

