// Runs one promqltest file (FIDELITY_FILE) through Prometheus 3.8's own
// promqltest; scripts/check-fidelity-tests copies it into the module.
package promql_test

import (
	"os"
	"testing"

	"github.com/prometheus/prometheus/promql/promqltest"
)

func TestFidelityFile(t *testing.T) {
	content, err := os.ReadFile(os.Getenv("FIDELITY_FILE"))
	if err != nil {
		t.Fatal(err)
	}
	promqltest.RunTest(t, string(content), promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery))
}
