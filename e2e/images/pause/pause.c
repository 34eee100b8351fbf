/*
 * Spillway's pause container: the process that holds a pod sandbox's namespaces.
 * It sleeps until a signal arrives, reaps any children re-parented to it (it is PID 1
 * in the pod when the pod shares its process namespace), and exits on TERM or INT.
 * Built with `gcc -static`, so the image needs nothing but this one file.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal = 0;

static void on_stop(int sig) { stop_signal = sig; }

static void on_child(int sig) {
  (void)sig;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

static int handle(int sig, void (*fn)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fn;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = sig == SIGCHLD ? SA_NOCLDSTOP | SA_RESTART : 0;
  return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("spillway-pause " PAUSE_VERSION);
    return 0;
  }
  if (getpid() != 1) fprintf(stderr, "spillway-pause: warning: not PID 1\n");
  if (handle(SIGTERM, on_stop) || handle(SIGINT, on_stop) || handle(SIGCHLD, on_child)) {
    perror("spillway-pause: sigaction");
    return 1;
  }
  while (!stop_signal) pause();
  fprintf(stderr, "spillway-pause: shutting down on signal %d\n", (int)stop_signal);
  return 0;
}
