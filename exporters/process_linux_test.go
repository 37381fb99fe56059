//go:build linux

package exporters

import (
	"encoding/binary"
	"os"
	"syscall"
	"testing"
)

// TestListFDsMatchesStat checks the getdents fallback of countFDs (kernels before 6.2)
// against the count the kernel reports as the size of /proc/self/fd, with a few more
// descriptors open than usual.
func TestListFDsMatchesStat(t *testing.T) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/fd", &st); err != nil {
		t.Fatal(err)
	}
	if st.Size == 0 {
		t.Skip("this kernel (before 6.2) does not report open descriptors as the size of /proc/self/fd")
	}
	for range 5 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
	}
	c := newProcessCollector().(*processCollector)
	want, err := c.countFDs()
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.listFDs()
	if err != nil {
		t.Fatal(err)
	}
	if got != want || want < 8 {
		t.Errorf("listFDs = %d, countFDs (stat size) = %d; want equal and at least 8", got, want)
	}
}

func TestCountDirents(t *testing.T) {
	rec := func(name string) []byte {
		reclen := (19 + len(name) + 1 + 7) &^ 7
		b := make([]byte, reclen)
		binary.NativeEndian.PutUint16(b[16:], uint16(reclen))
		copy(b[19:], name)
		return b
	}
	var buf []byte
	for _, n := range []string{".", "..", "0", "1", "17", "..x", ".x"} {
		buf = append(buf, rec(n)...)
	}
	if got := countDirents(buf); got != 5 {
		t.Errorf("countDirents = %d, want 5", got)
	}
	if got := countDirents(buf[:len(buf)-3]); got != 4 {
		t.Errorf("countDirents of a cut buffer = %d, want 4 (the cut record ignored)", got)
	}
}
