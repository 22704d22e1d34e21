/* The call-sites test of sampled calls (tests/tests/sites.rs): maps 4000 blocks of 64 KiB with
 * mmap in map_small (each far below the bytes one sample stands for) and keeps them untouched,
 * so only the calls grow it. */
#include <sys/mman.h>
#include <unistd.h>

__attribute__((noinline)) int map_small(void) {
    char *p = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED;
}

int main(void) {
    for (int i = 0; i < 4000; i++) {
        if (map_small())
            return 1;
    }
    /* Alive a little longer, so the recorder symbolizes its stacks while it lives. */
    usleep(300000);
    return 0;
}
