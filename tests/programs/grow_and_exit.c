/* Grows by 32 MiB in grow_and_exit and exits at once: over well within one sampling interval,
 * so its stacks are named from the maps kept at its exec, not from a live process. */
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static char *grow_and_exit(size_t n) {
    char *p = malloc(n);
    memset(p, 1, n);
    return p;
}

int main(void) {
    for (int i = 0; i < 8; i++)
        grow_and_exit(4 << 20);
    return 0;
}
