package modbus

import (
	"errors"
	"strconv"
	"strings"

	mb "github.com/simonvetter/modbus"

	"github.com/voltedge/voltedge/internal/rtu"
)

// result classes of one request, from the library's error.
type result uint8

const (
	resOK        result = iota
	resException        // the device answered with an exception (code alongside)
	resTimeout          // no answer within the request timeout
	resCRC              // an answer with a bad CRC (RTU)
	resMismatch         // an answer that does not fit the request, or broken framing
	resInvalid          // the request itself was refused by the library
	resIO               // the connection failed: it must be closed and opened again
)

// exceptionCodes maps the library's exception errors to Modbus exception codes.
var exceptionCodes = []struct {
	err  mb.Error
	code uint8
}{
	{mb.ErrIllegalFunction, rtu.ExIllegalFunction},
	{mb.ErrIllegalDataAddress, rtu.ExIllegalDataAddress},
	{mb.ErrIllegalDataValue, rtu.ExIllegalDataValue},
	{mb.ErrServerDeviceFailure, rtu.ExSlaveDeviceFailure},
	{mb.ErrAcknowledge, rtu.ExAcknowledge},
	{mb.ErrServerDeviceBusy, rtu.ExSlaveDeviceBusy},
	{mb.ErrMemoryParityError, rtu.ExMemoryParityError},
	{mb.ErrGWPathUnavailable, rtu.ExGatewayPathUnavailable},
	{mb.ErrGWTargetFailedToRespond, rtu.ExGatewayTargetNoResponse},
}

// unknownException is how the library reports an exception code it has no
// error value for: "unknown exception code (N)".
const unknownException = "unknown exception code ("

// classify sorts an error of the library into a result class; for
// exceptions it also returns the code.
func classify(err error) (result, uint8) {
	if err == nil {
		return resOK, 0
	}
	var me mb.Error
	if errors.As(err, &me) {
		for _, e := range exceptionCodes {
			if me == e.err {
				return resException, e.code
			}
		}
		switch me {
		case mb.ErrRequestTimedOut:
			return resTimeout, 0
		case mb.ErrBadCRC:
			return resCRC, 0
		case mb.ErrShortFrame, mb.ErrProtocolError, mb.ErrBadUnitId, mb.ErrBadTransactionId, mb.ErrUnknownProtocolId:
			return resMismatch, 0
		case mb.ErrUnexpectedParameters, mb.ErrConfigurationError:
			return resInvalid, 0
		}
		return resMismatch, 0
	}
	if code, ok := parseUnknownException(err.Error()); ok {
		return resException, code
	}
	return resIO, 0
}

// parseUnknownException extracts N from "unknown exception code (N)".
func parseUnknownException(s string) (uint8, bool) {
	rest, ok := strings.CutPrefix(s, unknownException)
	if !ok {
		return 0, false
	}
	num, ok := strings.CutSuffix(rest, ")")
	if !ok || len(num) == 0 || len(num) > 3 {
		return 0, false
	}
	n, err := strconv.ParseUint(num, 10, 8)
	if err != nil {
		return 0, false
	}
	return uint8(n), true
}
