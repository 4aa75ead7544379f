#!/usr/bin/env bash
# The Debian packages agentkit needs beyond Python: ffmpeg (whisper reads audio through it) and the
# speech synthesizers of the spoken-question world. Installs them when run as root with apt-get;
# otherwise prints the exact command and fails.
set -euo pipefail
declare -A need=([ffmpeg]=ffmpeg [espeak-ng]=espeak-ng [flite]=flite [festival]=festival [sox]=sox)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
# festival's voices are only a recommendation of its package (not installed with
# --no-install-recommends); without them festival runs but cannot speak. kal is the base voice
# pool's; ked and the HTS slt are the wide pool's (mllm/worlds/speech.py VOICE_POOLS).
declare -A voices=([english/kal_diphone]=festvox-kallpc16k [english/ked_diphone]=festvox-kdlpc16k
                   [us/cmu_us_slt_arctic_hts]=festvox-us-slt-hts)
for v in "${!voices[@]}"; do
  [ -d "/usr/share/festival/voices/$v" ] || missing+=("${voices[$v]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  (apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}") >/dev/null
else
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them with:  sudo sh -c '$cmd'" >&2
  exit 1
fi
