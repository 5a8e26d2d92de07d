// tsdb-writer: writes series read from stdin into one Prometheus TSDB block
// with Prometheus's own tsdb library (tsdb.BlockWriter, as `promtool tsdb
// create-blocks-from` does), for the scale benchmark (tests/scale_bench),
// where OpenMetrics text through promtool is too slow for tens of
// thousands of series per cluster.
//
// Usage: tsdb-writer OUT_DIR < series
//
// Input, little endian, repeated until a record with 0 labels:
//
//	u32 label count, u8 metric type (0 other, 1 histogram, 2 summary),
//	then per label: u32 len, name, u32 len, value
//	u32 sample count, then per sample: i64 timestamp (ms), f64 value
//
// The `le` label of a histogram's series and the `quantile` label of a
// summary's are normalized as Prometheus's OpenMetrics parser normalizes
// them (`1` becomes `1.0`), so that the block holds what promtool's
// backfill or a scrape would store.
// Every sample must lie in one 2 h block window (aligned to 2 h, as
// Prometheus aligns its blocks). Prints the block's ULID, series and
// samples.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"

	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

const blockMs = int64(2 * 60 * 60 * 1000)

// Samples per appender before a commit, as promtool's backfill does.
const maxSamplesInAppender = 5000

type reader struct {
	r   *bufio.Reader
	buf []byte
}

func (r *reader) u32() (uint32, error) {
	var b [4]byte
	if _, err := io.ReadFull(r.r, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}

func (r *reader) u64() (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(r.r, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

func (r *reader) str() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	if n > 1<<20 {
		return "", fmt.Errorf("label of %d bytes", n)
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	b := r.buf[:n]
	if _, err := io.ReadFull(r.r, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// normalize is textparse's normalizeFloatsInLabelValues.
func normalize(kind byte, name, value string) string {
	if (kind == 1 && name == model.BucketLabel) || (kind == 2 && name == model.QuantileLabel) {
		if f, err := strconv.ParseFloat(value, 64); err == nil {
			return labels.FormatOpenMetricsFloat(f)
		}
	}
	return value
}

func run(out string) (err error) {
	w, err := tsdb.NewBlockWriter(promslog.NewNopLogger(), out, 2*blockMs)
	if err != nil {
		return fmt.Errorf("block writer: %w", err)
	}
	defer func() { err = errors.Join(err, w.Close()) }()
	ctx := context.Background()
	in := &reader{r: bufio.NewReaderSize(os.Stdin, 1<<20)}
	var app storage.Appender = w.Appender(ctx)
	window := int64(math.MinInt64)
	series, samples, pending := 0, 0, 0
	for {
		n, err := in.u32()
		if err != nil {
			return fmt.Errorf("series %d: %w", series, err)
		}
		if n == 0 {
			break
		}
		var kind [1]byte
		if _, err := io.ReadFull(in.r, kind[:]); err != nil {
			return fmt.Errorf("series %d: %w", series, err)
		}
		b := labels.NewScratchBuilder(int(n))
		for i := uint32(0); i < n; i++ {
			name, err := in.str()
			if err != nil {
				return fmt.Errorf("series %d: %w", series, err)
			}
			value, err := in.str()
			if err != nil {
				return fmt.Errorf("series %d: %w", series, err)
			}
			b.Add(name, normalize(kind[0], name, value))
		}
		b.Sort()
		lset := b.Labels()
		count, err := in.u32()
		if err != nil {
			return fmt.Errorf("series %v: %w", lset, err)
		}
		var ref storage.SeriesRef
		for i := uint32(0); i < count; i++ {
			t, err := in.u64()
			if err != nil {
				return fmt.Errorf("series %v: %w", lset, err)
			}
			v, err := in.u64()
			if err != nil {
				return fmt.Errorf("series %v: %w", lset, err)
			}
			ts := int64(t)
			start := ts - ((ts%blockMs)+blockMs)%blockMs
			if window == math.MinInt64 {
				window = start
			} else if start != window {
				return fmt.Errorf("series %v: sample at %d outside the 2 h window from %d", lset, ts, window)
			}
			ref, err = app.Append(ref, lset, ts, math.Float64frombits(v))
			if err != nil {
				return fmt.Errorf("series %v at %d: %w", lset, ts, err)
			}
			samples++
			pending++
			if pending >= maxSamplesInAppender {
				if err := app.Commit(); err != nil {
					return fmt.Errorf("commit: %w", err)
				}
				app = w.Appender(ctx)
				pending = 0
				// A new appender: the old reference is still valid in the head.
			}
		}
		series++
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	id, err := w.Flush(ctx)
	if err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	fmt.Printf("block %s: %d series, %d samples\n", id, series, samples)
	return nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tsdb-writer OUT_DIR < series")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "tsdb-writer:", err)
		os.Exit(1)
	}
}
