#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>
#include <spawn.h>
#include <malloc.h>
#include "ccairn_system.h"

int ccairn_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int ccairn_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int lowfd) {
    return posix_spawn_file_actions_addclosefrom_np(actions, lowfd);
}

int ccairn_set_pipe_size(int fd, int size) {
    return fcntl(fd, F_SETPIPE_SZ, size);
}

int ccairn_tune_malloc(int arenas, int mmap_threshold, int trim_threshold) {
    int ok = mallopt(M_ARENA_MAX, arenas);
    ok = mallopt(M_MMAP_THRESHOLD, mmap_threshold) && ok;
    /* A fixed mmap threshold also fixes the trim threshold (at 128 KiB unless
       set): how much free memory the top of the heap keeps before it is
       handed back. */
    return mallopt(M_TRIM_THRESHOLD, trim_threshold) && ok;
}

int ccairn_start_writeback(int fd, long long offset, long long length) {
    return sync_file_range(fd, (off64_t)offset, (off64_t)length, SYNC_FILE_RANGE_WRITE);
}
