package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Scraper fetches a Prometheus exposition as Prometheus does: one keep-alive connection,
// gzip accepted (Go's transport asks for it and decompresses). Not safe for concurrent use.
type Scraper struct {
	url    string
	client *http.Client
}

// NewScraper returns a Scraper of url with its own connection pool. Close it when done.
func NewScraper(url string) *Scraper {
	return &Scraper{url: url, client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}}
}

// Close drops the idle connection.
func (s *Scraper) Close() { s.client.CloseIdleConnections() }

// Scrape fetches the exposition and returns it with the latency from sending the request to
// reading the last byte.
func (s *Scraper) Scrape(ctx context.Context) (string, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return "", 0, err
	}
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("scrape %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	lat := time.Since(start)
	if err != nil {
		return "", 0, fmt.Errorf("scrape %s: read body: %w", s.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("scrape %s: status %s", s.url, resp.Status)
	}
	return string(body), lat, nil
}

// Sample is one line of a Prometheus text exposition.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// ParseExposition returns the samples of a Prometheus text exposition, skipping comments
// and lines it cannot read.
func ParseExposition(text string) []Sample {
	var out []Sample
	for line := range strings.SplitSeq(text, "\n") {
		if s, ok := parseSampleLine(line); ok {
			out = append(out, s)
		}
	}
	return out
}

// SeriesCount is the number of samples in an exposition: the series a scraper stores.
func SeriesCount(text string) int { return len(ParseExposition(text)) }

// Sum adds the values of the samples named name whose labels include every pair of match.
func Sum(samples []Sample, name string, match map[string]string) float64 {
	var total float64
next:
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		for k, v := range match {
			if s.Labels[k] != v {
				continue next
			}
		}
		total += s.Value
	}
	return total
}

func parseSampleLine(line string) (Sample, bool) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return Sample{}, false
	}
	end := strings.IndexAny(line, "{ ")
	if end <= 0 {
		return Sample{}, false
	}
	s := Sample{Name: line[:end]}
	rest := line[end:]
	if rest[0] == '{' {
		labels, after, ok := parseLabels(rest[1:])
		if !ok {
			return Sample{}, false
		}
		s.Labels, rest = labels, after
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return Sample{}, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return Sample{}, false
	}
	s.Value = v
	return s, true
}

// parseLabels reads `k="v",...}` and returns the labels and the text after '}'.
func parseLabels(s string) (map[string]string, string, bool) {
	labels := map[string]string{}
	for {
		s = strings.TrimLeft(s, " ,")
		if strings.HasPrefix(s, "}") {
			return labels, s[1:], true
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || len(s) < eq+2 || s[eq+1] != '"' {
			return nil, "", false
		}
		key := strings.TrimSpace(s[:eq])
		var val strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[i])
				}
				continue
			}
			val.WriteByte(s[i])
		}
		if i >= len(s) {
			return nil, "", false
		}
		labels[key] = val.String()
		s = s[i+1:]
	}
}
