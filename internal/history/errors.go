package history

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/go-sql-driver/mysql"
)

// IsUnavailable reports whether err means the database could not be reached
// or the connection broke (the batch should be spooled and retried), as
// opposed to an error caused by the data or the schema. Context deadlines
// count as unavailable; cancellation does not.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1040, // ER_CON_COUNT_ERROR: too many connections
			1053, // ER_SERVER_SHUTDOWN
			1205, // ER_LOCK_WAIT_TIMEOUT
			1213, // ER_LOCK_DEADLOCK
			1290, // ER_OPTION_PREVENTS_STATEMENT: --read-only (failover)
			1836, // ER_READ_ONLY_MODE
			1927, // ER_CONNECTION_KILLED (MariaDB)
			2002, // CR_CONNECTION_ERROR
			2003, // CR_CONN_HOST_ERROR
			2006, // CR_SERVER_GONE_ERROR
			2013: // CR_SERVER_LOST
			return true
		}
	}
	return false
}
