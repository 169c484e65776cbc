package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/llamacpp"
)

// DevicesOptions are the options of `lldiff devices`.
type DevicesOptions struct {
	IO   *IOStreams
	JSON bool
}

func newCmdDevices(io *IOStreams, runF func(*DevicesOptions) error) *cobra.Command {
	opts := &DevicesOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "devices",
		Short: "List the compute devices llama.cpp can use, with their memory",
		Long: `List the compute devices of every loaded ggml backend. GPU backends are
loaded from $LLDIFF_BACKEND_DIR, else from lib/lldiff beside or above the
lldiff binary (make cuda puts libggml-cuda.so there).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return devicesRun(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}

type deviceJSON struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Type        string `json:"type"`
	FreeBytes   uint64 `json:"free_bytes"`
	TotalBytes  uint64 `json:"total_bytes"`
}

func devicesRun(opts *DevicesOptions) error {
	if env := os.Getenv("LLDIFF_BACKEND_DIR"); env != "" {
		for _, d := range filepath.SplitList(env) {
			if st, err := os.Stat(d); err != nil || !st.IsDir() {
				fmt.Fprintf(opts.IO.ErrOut, "note: LLDIFF_BACKEND_DIR names %s, which is not a directory: no GPU backend is loaded from it (point it at the directory holding libggml-cuda.so, or unset it)\n", d)
			}
		}
	}
	devs := llamacpp.Devices()
	if opts.JSON {
		out := struct {
			Devices     []deviceJSON `json:"devices"`
			BackendDir  []string     `json:"backend_dirs"`
			CPUFeatures string       `json:"cpu_features"`
			AMX         bool         `json:"amx_compiled"`
		}{BackendDir: llamacpp.BackendDirs(), CPUFeatures: strings.TrimSpace(llamacpp.SystemInfo()), AMX: llamacpp.AMXCompiled()}
		for _, d := range devs {
			out.Devices = append(out.Devices, deviceJSON{d.Name, d.Description, d.Type, d.Free, d.Total})
		}
		return writeJSON(opts.IO.Out, out)
	}
	var rows [][]string
	for _, d := range devs {
		rows = append(rows, []string{d.Name, d.Type, d.Description, human(d.Free), human(d.Total)})
	}
	if err := table(opts.IO, []string{"device", "type", "description", "free", "total"}, rows); err != nil {
		return err
	}
	amx := "AMX kernels not compiled (built for a CPU without AMX)"
	if llamacpp.AMXCompiled() {
		amx = "AMX kernels compiled"
	}
	fmt.Fprintf(opts.IO.Out, "cpu: %s; %s\n", strings.TrimSpace(strings.TrimRight(strings.TrimPrefix(strings.TrimSpace(llamacpp.SystemInfo()), "CPU :"), " |")), amx)
	if opts.IO.IsTerminal {
		dirs := llamacpp.BackendDirs()
		if len(dirs) == 0 {
			fmt.Fprintln(opts.IO.Out, "no GPU backend directory found (set LLDIFF_BACKEND_DIR or run make cuda)")
		} else {
			fmt.Fprintln(opts.IO.Out, "backends loaded from:", dirs)
		}
	}
	return nil
}
