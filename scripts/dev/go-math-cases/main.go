// Regenerate src/model/gomath/go_cases.txt with:
//   (cd scripts/dev/go-math-cases && GOFLAGS=-mod=mod go run .) > src/model/gomath/go_cases.txt
//
// Prints Go's math.Log2, Log, Log10 and Exp2 (as Prometheus on amd64 computes
// them) for a fixed, reproducible set of inputs: "<func> <in bits> <out bits>".
package main

import (
	"fmt"
	"math"
	"math/rand"
)

func main() {
	r := rand.New(rand.NewSource(7))
	var logIn, expIn []float64
	for schema := -4; schema <= 8; schema++ {
		for idx := -40; idx <= 40; idx += 3 {
			b := math.Ldexp(1, 0) * math.Exp2(float64(idx)*math.Ldexp(1, -schema))
			logIn = append(logIn, b)
		}
	}
	for i := 0; i < 200; i++ {
		logIn = append(logIn, r.Float64()*math.Pow(10, float64(r.Intn(16)-8)))
		expIn = append(expIn, (r.Float64()-0.5)*60)
	}
	logIn = append(logIn, 0.5, 1, 2, 1024, math.Sqrt2/2, 0.7071067811865476, 1e-310, math.MaxFloat64)
	expIn = append(expIn, 0, 0.5, -0.5, 1, -1, 1023.5, -1074.5, 10.25, -3.75)
	for _, x := range logIn {
		fmt.Printf("log2 %016x %016x\n", math.Float64bits(x), math.Float64bits(math.Log2(x)))
	}
	for _, x := range logIn {
		fmt.Printf("ln %016x %016x\n", math.Float64bits(x), math.Float64bits(math.Log(x)))
		fmt.Printf("log10 %016x %016x\n", math.Float64bits(x), math.Float64bits(math.Log10(x)))
	}
	for _, x := range expIn {
		fmt.Printf("exp2 %016x %016x\n", math.Float64bits(x), math.Float64bits(math.Exp2(x)))
	}
}
