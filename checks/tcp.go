package checks

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

const (
	maxTCPReply = 64 << 10               // bytes read while looking for expect in the first reply
	replyPause  = 250 * time.Millisecond // a pause this long ends the first reply
)

// probeTCP connects to the address, sends send if set and, if expect is set, reads the
// first reply (see readUntil) and looks for expect in it.
func probeTCP(ctx context.Context, c *config.Check) Result {
	t := c.TCP
	if t == nil {
		return missingBlock(config.TypeTCP, "address: 127.0.0.1:6379")
	}
	if err := checkAddress("address", t.Address); err != nil {
		return failf(ReasonConfig, "%v", err)
	}
	var tm timings
	d := net.Dialer{KeepAlive: -1}
	conn, err := dialTimed(ctx, &d, "tcp", t.Address, &tm)
	if err != nil {
		r := failf(reasonOf(err), "%v", err)
		r.Phases = tm.phases()
		return r
	}
	defer conn.Close()
	r := Result{Status: Passing, Phases: tm.phases(), Output: "connected in " + formatDuration(tm.phase(phaseConnect))}
	if t.Send == "" && t.Expect == "" {
		return r
	}

	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if t.Send != "" {
		if _, err := io.WriteString(conn, t.Send); err != nil {
			return failf(reasonOf(err), "send to %s: %v", t.Address, err)
		}
	}
	if t.Expect == "" {
		return r
	}
	reply, err := readUntil(ctx, conn, t.Expect)
	switch {
	case strings.Contains(reply, t.Expect):
		return r
	case err != nil:
		r = failf(reasonOf(err), "reading reply from %s: %v (got %s)", t.Address, err, quoteCut(reply, 128))
	default:
		r = failf(ReasonBody, "reply does not contain %s (got %s)", quoteCut(t.Expect, 64), quoteCut(reply, 128))
	}
	r.Phases = tm.phases()
	return r
}

// readUntil reads the first reply from conn: until what it read contains want, the peer
// closes, maxTCPReply bytes arrived, or, once something arrived, nothing more comes for
// replyPause. Those ends return a nil error; an error means the reply did not come.
func readUntil(ctx context.Context, conn net.Conn, want string) (string, error) {
	var small [512]byte
	buf, wantB := small[:0], []byte(want)
	for len(buf) < maxTCPReply {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := conn.Read(buf[len(buf):min(cap(buf), maxTCPReply)])
		buf = buf[:len(buf)+n]
		switch {
		case n > 0 && bytes.Contains(buf, wantB):
			return string(buf), nil
		case errors.Is(err, io.EOF):
			return string(buf), nil
		case errors.Is(err, os.ErrDeadlineExceeded) && len(buf) > 0 && ctx.Err() == nil:
			return string(buf), nil // the reply paused: it is complete
		case err != nil:
			return string(buf), err
		}
		if len(buf) > 0 {
			pause := time.Now().Add(replyPause)
			if dl, ok := ctx.Deadline(); ok && dl.Before(pause) {
				pause = dl
			}
			_ = conn.SetReadDeadline(pause)
		}
	}
	return string(buf), nil
}
