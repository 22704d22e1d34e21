/* The growth-sites end-to-end test's program (tests/tests/sites.rs): each step is a test (memtools
 * phases) that leaks 1 MiB in grow_cache while churn mallocs and frees memory it reuses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *kept[4096];
int nkept;
volatile long sink;

__attribute__((noinline)) void grow_cache(void) {
    char *p = malloc(64 * 1024);
    memset(p, 1, 64 * 1024);
    kept[nkept++] = p;
}

__attribute__((noinline)) void churn(void) {
    for (int i = 0; i < 8; i++) {
        char *q = malloc(4 * 1024);
        memset(q, 2, 4 * 1024);
        sink += q[i];
        free(q);
    }
}

/* Marks each step as a test, as a test harness would (memtools' phases). */
static void phase(const char *what, int step) {
    const char *path = getenv("MEMTOOLS_PHASES");
    if (!path)
        return;
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    fprintf(f, "%s test_%d\n", what, step);
    fclose(f);
}

int main(void) {
    for (int step = 0; step < 24; step++) {
        phase("begin", step);
        for (int i = 0; i < 16; i++)
            grow_cache();
        for (int i = 0; i < 25; i++) {
            churn();
            usleep(10000);
        }
        phase("end", step);
    }
    printf("%d %ld\n", kept[nkept - 1][5], sink);
    return 0;
}
