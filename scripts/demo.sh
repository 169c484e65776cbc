#!/bin/sh
# make demo: run lldiff on a small real model, offline. The model is
# $LLDIFF_MODEL when set, else stories260K, which ships in testdata/models.
set -eu
cd "$(dirname "$0")/.."
BIN=./bin/lldiff

if [ -n "${LLDIFF_MODEL:-}" ]; then
	MODEL=$LLDIFF_MODEL
	if [ ! -f "$MODEL" ]; then
		echo "LLDIFF_MODEL=$MODEL: no such file. Unset it to use the stories260K that ships in testdata/models." >&2
		exit 1
	fi
else
	MODEL=testdata/models/stories260K.gguf
	if [ ! -f "$MODEL" ]; then
		echo "$MODEL is missing: the checkout is incomplete (git checkout -- testdata/models), or set LLDIFF_MODEL to a GGUF file." >&2
		exit 1
	fi
fi

A="Once upon a time, there was a little girl. One day,"
B="Once upon a time, there was a little boy. One day,"
echo
echo "\$ lldiff compare -m $MODEL --answer \" she\" --answer \" he\" \"$A\" \"$B\""
$BIN compare -m "$MODEL" --answer " she" --answer " he" "$A" "$B"
