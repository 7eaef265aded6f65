# Sourced by the infra scripts that run on free ports (test.sh, bench.sh), before env.sh reads the
# ports: the one port picker.

# free_port: a free TCP port on 127.0.0.1 (the OS picks it).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
