# Sourced by install.sh and test.sh: install Debian packages where this script may (root, or
# password-less sudo, with apt-get); else say in one line how to.
#   system_packages "what they are for" package...
system_packages() {
  local why=$1 sudo=()
  shift
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=(sudo -n); else sudo=(none); fi
  fi
  if command -v apt-get >/dev/null 2>&1 && [ "${sudo[*]:-}" != none ]; then
    if "${sudo[@]}" apt-get update -qq >/dev/null \
      && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; then
      return 0
    fi
  fi
  echo "dropvec: $why needs: apt-get install $* (not installed)" >&2
  return 1
}
