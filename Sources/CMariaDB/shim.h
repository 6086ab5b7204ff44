#ifndef CAIRN_CMARIADB_SHIM_H
#define CAIRN_CMARIADB_SHIM_H
#include <mysql.h>
#include <errmsg.h>
#include <mariadb_rpl.h>

/* Swift cannot call C variadic functions or function-like macros: these
   wrap the replication API's option setter and initializer. */

static inline MARIADB_RPL *cairn_rpl_init(MYSQL *mysql) {
    return mariadb_rpl_init(mysql);
}

static inline int cairn_rpl_set_server_id(MARIADB_RPL *rpl, unsigned int server_id) {
    return mariadb_rpl_optionsv(rpl, MARIADB_RPL_SERVER_ID, server_id);
}

static inline int cairn_rpl_set_flags(MARIADB_RPL *rpl, unsigned int flags) {
    return mariadb_rpl_optionsv(rpl, MARIADB_RPL_FLAGS, flags);
}

static inline int cairn_rpl_set_start(MARIADB_RPL *rpl, unsigned long position) {
    return mariadb_rpl_optionsv(rpl, MARIADB_RPL_START, position);
}

static inline int cairn_rpl_set_filename(MARIADB_RPL *rpl, const char *name, size_t length) {
    return mariadb_rpl_optionsv(rpl, MARIADB_RPL_FILENAME, name, length);
}

/* The bytes of one received event, from its 19-byte header to its end
   (checksum included), without the protocol's leading status byte. */
static inline const unsigned char *cairn_rpl_event_bytes(const MARIADB_RPL_EVENT *event, size_t *length) {
    if (!event->raw_data || event->raw_data_ofs > event->raw_data_size) { *length = 0; return 0; }
    *length = event->raw_data_size - event->raw_data_ofs;
    return event->raw_data + event->raw_data_ofs;
}
#endif
