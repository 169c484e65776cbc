// Package llamacpp is lldiff's cgo layer over llama.cpp: backends, models,
// tokenizer, contexts and decoding with activation capture. Its exported API
// shows no C types.
package llamacpp

/*
#cgo CXXFLAGS: -std=c++17
#include <stdlib.h>
#include "llama.h"
#include "ggml-backend.h"
#include "shim.h"
*/
import "C"

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/lldiff/lldiff/internal/ggmlcpu"           // ggml CPU pieces the ollama package leaves out (AMX)
	_ "github.com/ollama/ollama/llama/llama.cpp/src"      // compiles llama.cpp
	_ "github.com/ollama/ollama/ml/backend/ggml/ggml/src" // compiles ggml and its CPU backend
)

// AMXCompiled reports whether ggml's AMX matrix kernels are compiled in:
// true when lldiff was built for a CPU with AMX-INT8 and AVX512-VNNI
// (-march=native on such a Xeon). ggml uses them at run time for the
// quantized types they support when the CPU and kernel allow AMX.
func AMXCompiled() bool { return ggmlcpu.AMX() }

func init() {
	// Replace the log sink the ggml package installs: quiet unless -v.
	C.lldiff_log_install()
}

// SetVerbose sends llama.cpp's and ggml's log to stderr (on) or drops it.
func SetVerbose(on bool) {
	v := 0
	if on {
		v = 1
	}
	C.lldiff_log_verbose(C.int(v))
}

var initOnce sync.Once

// BackendDirs returns the directories searched for GPU backend libraries
// (libggml-cuda.so and friends): $LLDIFF_BACKEND_DIR if set, else lib/lldiff
// beside or above the executable.
func BackendDirs() []string {
	if d := os.Getenv("LLDIFF_BACKEND_DIR"); d != "" {
		return filepath.SplitList(d)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	dir := filepath.Dir(exe)
	var dirs []string
	for _, d := range []string{filepath.Join(dir, "lib", "lldiff"), filepath.Join(dir, "..", "lib", "lldiff")} {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			dirs = append(dirs, filepath.Clean(d))
		}
	}
	return dirs
}

// Init initialises llama.cpp and loads GPU backends once per process. Every
// function that needs llama.cpp calls it; calling it again does nothing.
func Init() {
	initOnce.Do(func() {
		C.llama_backend_init()
		for _, d := range BackendDirs() {
			cd := C.CString(d)
			C.ggml_backend_load_all_from_path(cd)
			C.free(unsafe.Pointer(cd))
		}
	})
}

// Device is a compute device ggml can use.
type Device struct {
	Name        string
	Description string
	Type        string // "CPU", "GPU", "iGPU", "ACCEL"
	Free, Total uint64 // bytes
}

// Devices lists the devices of every loaded backend.
func Devices() []Device {
	Init()
	var out []Device
	for i := range C.ggml_backend_dev_count() {
		d := C.ggml_backend_dev_get(i)
		var free, total C.size_t
		C.ggml_backend_dev_memory(d, &free, &total)
		t := "CPU"
		switch C.ggml_backend_dev_type(d) {
		case C.GGML_BACKEND_DEVICE_TYPE_GPU:
			t = "GPU"
		case C.GGML_BACKEND_DEVICE_TYPE_IGPU:
			t = "iGPU"
		case C.GGML_BACKEND_DEVICE_TYPE_ACCEL:
			t = "ACCEL"
		}
		out = append(out, Device{
			Name:        C.GoString(C.ggml_backend_dev_name(d)),
			Description: C.GoString(C.ggml_backend_dev_description(d)),
			Type:        t,
			Free:        uint64(free),
			Total:       uint64(total),
		})
	}
	return out
}

// SystemInfo returns llama.cpp's description of the CPU features it uses.
func SystemInfo() string {
	Init()
	return C.GoString(C.llama_print_system_info())
}

// PhysicalCores returns the number of physical CPU cores (not hyperthreads),
// the default thread count: ggml's threads spin, and two on one core slow
// each other down.
func PhysicalCores() int {
	n := runtime.NumCPU()
	if runtime.GOOS != "linux" {
		return n
	}
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return n
	}
	defer f.Close()
	cores := map[string]bool{}
	var phys, core string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			if phys != "" || core != "" {
				cores[phys+"/"+core] = true
			}
			phys, core = "", ""
			continue
		}
		switch strings.TrimSpace(k) {
		case "physical id":
			phys = strings.TrimSpace(v)
		case "core id":
			core = strings.TrimSpace(v)
		}
	}
	if phys != "" || core != "" {
		cores[phys+"/"+core] = true
	}
	if len(cores) == 0 || len(cores) > n {
		return n
	}
	return len(cores)
}
