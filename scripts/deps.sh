# Sourced by scripts/test and scripts/demo: installs the Debian 12 packages
# babelfish needs to build, test and demo, if any is missing.
BF_PACKAGES=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libexpat1-dev libuv1-dev libssl-dev libcurl4-openssl-dev libsqlite3-dev
  libidn-dev libinih-dev libjansson-dev libmicrohttpd-dev libcmocka-dev
  prosody lua-unbound ejabberd python3 python3-slixmpp procps iproute2
  ngircd inspircd atheme-services
)

bf_install_deps() {
  local missing=() p
  for p in "${BF_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' \
      || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # policy-rc.d may refuse to start the packaged prosody service; that is
  # fine: the tests and the demo start their own on loopback.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
