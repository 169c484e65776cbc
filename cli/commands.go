package cli

import "github.com/spf13/cobra"

// commands returns every lldiff command: the one place commands are
// registered. A new command is a new file with its options, newCmdX and
// xRun, and a line here.
func commands(io *IOStreams) []*cobra.Command {
	return []*cobra.Command{
		newCmdDevices(io, nil),
		newCmdInspect(io, nil),
		newCmdTokenize(io, nil),
		newCmdCapture(io, nil),
		newCmdCompare(io, nil),
		newCmdPatch(io, nil),
		newCmdContrast(io, nil),
		newCmdMerge(io, nil),
		newCmdSteer(io, nil),
		newCmdVec(io, nil),
		newCmdServe(io, nil),
		newCmdParams(io, nil),
		newCmdMap(io, nil),
		newCmdSynth(io, nil),
	}
}
