// Command cores prints the number of physical CPU cores: lldiff's default
// thread count, which make bench-anchor gives llama.cpp too.
package main

import (
	"fmt"

	"github.com/lldiff/lldiff/llamacpp"
)

func main() { fmt.Println(llamacpp.PhysicalCores()) }
