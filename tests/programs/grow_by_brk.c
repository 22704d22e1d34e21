/* The call-sites test's program (tests/tests/sites.rs): grows its heap by sbrk in grow_heap, 40
 * calls of 1 MiB, without malloc (so no other brk call grows it). With the argument `wait`, it
 * first sleeps a second (to be followed by a recording of its pid) and after growing waits to
 * be killed. */
#include <string.h>
#include <unistd.h>

__attribute__((noinline)) void grow_heap(void) {
    char *p = sbrk(1 << 20);
    if (p == (void *)-1)
        return;
    memset(p, 1, 1 << 20);
}

int main(int argc, char **argv) {
    int wait = argc > 1 && strcmp(argv[1], "wait") == 0;
    if (wait)
        sleep(1);
    for (int i = 0; i < 40; i++) {
        grow_heap();
        usleep(5000);
    }
    if (wait)
        pause();
    /* Alive a little longer, so the recorder symbolizes its stacks while it lives. */
    usleep(300000);
    return 0;
}
