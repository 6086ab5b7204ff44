#ifndef CCAIRN_SYSTEM_H
#define CCAIRN_SYSTEM_H
#include <spawn.h>

/// pipe2(fds, O_CLOEXEC): both ends close on exec.
int ccairn_pipe_cloexec(int fds[2]);

/// Adds "close every descriptor from lowfd up" to spawn file actions
/// (glibc's posix_spawn_file_actions_addclosefrom_np, a GNU extension).
int ccairn_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int lowfd);

/// fcntl(fd, F_SETPIPE_SZ, size): returns the new size or -1.
int ccairn_set_pipe_size(int fd, int size);

/// mallopt(M_ARENA_MAX, arenas), mallopt(M_MMAP_THRESHOLD, mmap_threshold)
/// and mallopt(M_TRIM_THRESHOLD, trim_threshold): caps glibc's per-thread
/// heaps, serves blocks of at least the mmap threshold with their own
/// mappings, returned to the system when freed, and trims the heap's top
/// once more than the trim threshold is free there. Nonzero on success.
int ccairn_tune_malloc(int arenas, int mmap_threshold, int trim_threshold);

/// sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE): starts writing
/// a range back to disk without waiting for it.
int ccairn_start_writeback(int fd, long long offset, long long length);

#endif
