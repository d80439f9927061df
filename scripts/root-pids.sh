# Sourced by scripts/sandbox.sh and scripts/broker.sh.  Both run a program
# chrooted into the one sid root ($ROOT) and find theirs by that root and its
# name: no pid file to lose, and neither script touches the other's process.

# root_pids NAME: the pids of processes whose root is $ROOT and whose name is NAME.
root_pids() {
  local p
  for p in /proc/[0-9]*; do
    if [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] \
      && [ "$(cat "$p/comm" 2>/dev/null)" = "$1" ]; then
      echo "${p#/proc/}"
    fi
  done
}
