#ifndef CAIRN_CMARIADB_SHIM_H
#define CAIRN_CMARIADB_SHIM_H
#include <mysql.h>
#include <errmsg.h>
#endif
