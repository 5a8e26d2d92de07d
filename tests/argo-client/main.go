// Command argo-client runs Argo Rollouts' Prometheus metric provider
// (metricproviders/prometheus: NewPrometheusAPI, NewPrometheusProvider,
// Provider.Run) once, as a rollouts controller does for an AnalysisTemplate
// metric, and prints the measurement as one JSON object:
//
//	{"phase":"Successful","value":"[0.97]","message":"","metadata":{...}}
//
// Flags name the metric's fields (address, query, successCondition,
// failureCondition, timeout, headers). -at sets the evaluation time: the provider
// asks for time.Now(), and the tests' data is backfilled at fixed times, so
// -at shifts that one argument of the instant query to the data's clock;
// everything else (HTTP client, POST with GET fallback, result decoding,
// condition evaluation, phases and messages) is Argo's own code.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	log "github.com/sirupsen/logrus"

	"github.com/argoproj/argo-rollouts/metricproviders/prometheus"
	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
)

// atAPI is the provider's Prometheus API with the instant query's time
// replaced by a fixed one.
type atAPI struct {
	v1.API
	at time.Time
}

func (a atAPI) Query(ctx context.Context, query string, _ time.Time, opts ...v1.Option) (model.Value, v1.Warnings, error) {
	return a.API.Query(ctx, query, a.at, opts...)
}

// headerFlags collects -header Key=Value flags.
type headerFlags []v1alpha1.WebMetricHeader

func (h *headerFlags) String() string { return fmt.Sprint(*h) }

func (h *headerFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want Key=Value, got %q", s)
	}
	*h = append(*h, v1alpha1.WebMetricHeader{Key: k, Value: v})
	return nil
}

type output struct {
	Phase    string            `json:"phase"`
	Value    string            `json:"value"`
	Message  string            `json:"message"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func main() {
	address := flag.String("address", "", "the metric's provider.prometheus.address")
	query := flag.String("query", "", "the metric's provider.prometheus.query")
	success := flag.String("success-condition", "", "the metric's successCondition (e.g. result[0] > 0.90)")
	failure := flag.String("failure-condition", "", "the metric's failureCondition")
	timeout := flag.Int64("timeout", 30, "the metric's provider.prometheus.timeout, seconds")
	at := flag.Float64("at", math.NaN(), "evaluation time, Unix seconds (default: now, as Argo asks)")
	var headers headerFlags
	flag.Var(&headers, "header", "the metric's provider.prometheus.headers entry, Key=Value (repeatable)")
	flag.Parse()
	if *address == "" || *query == "" {
		fmt.Fprintln(os.Stderr, "argo-client: -address and -query are required")
		os.Exit(2)
	}

	logger := log.New()
	logger.SetOutput(os.Stderr)
	logger.SetLevel(log.WarnLevel)
	entry := log.NewEntry(logger)

	metric := v1alpha1.Metric{
		Name:             "success-rate",
		SuccessCondition: *success,
		FailureCondition: *failure,
		Provider: v1alpha1.MetricProvider{
			Prometheus: &v1alpha1.PrometheusMetric{
				Address: *address,
				Query:   *query,
				Timeout: timeout,
				Headers: headers,
			},
		},
	}
	api, err := prometheus.NewPrometheusAPI(metric)
	if err != nil {
		fmt.Fprintf(os.Stderr, "argo-client: NewPrometheusAPI: %v\n", err)
		os.Exit(1)
	}
	if !math.IsNaN(*at) {
		sec, frac := math.Modf(*at)
		api = atAPI{API: api, at: time.Unix(int64(sec), int64(math.Round(frac*1e9)))}
	}
	provider, err := prometheus.NewPrometheusProvider(api, *entry, metric)
	if err != nil {
		fmt.Fprintf(os.Stderr, "argo-client: NewPrometheusProvider: %v\n", err)
		os.Exit(1)
	}
	m := provider.Run(&v1alpha1.AnalysisRun{}, metric)
	out := output{Phase: string(m.Phase), Value: m.Value, Message: m.Message, Metadata: m.Metadata}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintf(os.Stderr, "argo-client: %v\n", err)
		os.Exit(1)
	}
}
