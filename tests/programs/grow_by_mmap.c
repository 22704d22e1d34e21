/* The call-sites test's program (tests/tests/sites.rs): maps 1 MiB blocks with mmap in
 * map_direct and allocates 512 KiB blocks with malloc (above glibc's mmap threshold, so malloc
 * maps each) in malloc_large, 30 of each, and keeps them. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

char *kept[64];
int nkept;

__attribute__((noinline)) void map_direct(void) {
    char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return;
    memset(p, 1, 1 << 20);
    kept[nkept++] = p;
}

__attribute__((noinline)) void malloc_large(void) {
    char *p = malloc(512 << 10);
    memset(p, 2, 512 << 10);
    kept[nkept++] = p;
}

int main(void) {
    for (int i = 0; i < 30; i++) {
        map_direct();
        malloc_large();
        usleep(5000);
    }
    /* Alive a little longer, so the recorder symbolizes its stacks while it lives. */
    usleep(300000);
    return 0;
}
