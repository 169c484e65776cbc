#!/bin/sh
# make demo: run lldiff on a small real model. The model is $LLDIFF_MODEL,
# else ../shared/models/stories260K.gguf, else models/stories260K.gguf
# (downloaded there first, sha256 checked).
set -eu
cd "$(dirname "$0")/.."
BIN=./bin/lldiff
SHA=270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d
URLS="https://huggingface.co/ggml-org/models-moved/resolve/main/tinyllamas/stories260K.gguf
https://huggingface.co/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf"

sha256() {
	if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
	else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

fetch() { # url dest
	if command -v curl >/dev/null 2>&1; then curl -fsSL --connect-timeout 10 -o "$2" "$1"
	elif command -v wget >/dev/null 2>&1; then wget -q -T 10 -O "$2" "$1"
	else return 1; fi
}

if [ -n "${LLDIFF_MODEL:-}" ]; then
	MODEL=$LLDIFF_MODEL
	if [ ! -f "$MODEL" ]; then
		echo "LLDIFF_MODEL=$MODEL: no such file. Unset it to use stories260K." >&2
		exit 1
	fi
elif [ -f ../shared/models/stories260K.gguf ]; then
	MODEL=../shared/models/stories260K.gguf
elif [ -f models/stories260K.gguf ]; then
	MODEL=models/stories260K.gguf
else
	MODEL=models/stories260K.gguf
	echo "downloading stories260K.gguf (1.1 MB) into models/ ..."
	ok=0
	for u in $URLS; do
		if fetch "$u" "$MODEL.part" && [ "$(sha256 "$MODEL.part")" = "$SHA" ]; then
			mv "$MODEL.part" "$MODEL"; ok=1; break
		fi
		rm -f "$MODEL.part"
	done
	if [ $ok = 0 ]; then
		cat >&2 <<MSG
make demo needs the model stories260K.gguf and could not download it (no network?).
Do one of these, then run make demo again:
  - download it on a machine with internet from
      https://huggingface.co/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf
    check: sha256 $SHA
    and copy it to $(pwd)/models/stories260K.gguf
  - or point LLDIFF_MODEL at any llama GGUF: LLDIFF_MODEL=/path/model.gguf make demo
MSG
		exit 1
	fi
fi

A="Once upon a time, there was a little girl. One day,"
B="Once upon a time, there was a little boy. One day,"
if $BIN compare --help >/dev/null 2>&1; then
	echo
	echo "\$ lldiff compare -m $MODEL --answer \" she\" --answer \" he\" \"$A\" \"$B\""
	$BIN compare -m "$MODEL" --answer " she" --answer " he" "$A" "$B"
else
	OUT=$(mktemp -d "${TMPDIR:-/tmp}/lldiff-demo.XXXXXX")
	echo
	echo "\$ lldiff capture -m $MODEL --hooks resid_post,attn_out,mlp_out -o $OUT \"$A\""
	$BIN capture -m "$MODEL" --hooks resid_post,attn_out,mlp_out -o "$OUT" "$A"
	rm -rf "$OUT"
fi
