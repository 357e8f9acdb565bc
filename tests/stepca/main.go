// Command step-ca for p11enroll's integration tests: smallstep step-ca 0.19 built from
// Debian's golang-github-smallstep-certificates-dev, which ships the library but no
// cmd/. It runs the package's own "start" command (commands.AppCommand) as the whole
// program, with the software CA service and the software key manager linked in.
// Build it with tests/stepca/build.sh.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/smallstep/certificates/commands"
	"github.com/urfave/cli"

	// Registered by their init(): the CA service and the KMS a file-based ca.json uses.
	_ "github.com/smallstep/certificates/cas/softcas"
	_ "github.com/smallstep/certificates/kms/softkms"
)

func main() {
	app := cli.NewApp()
	app.Name = "step-ca"
	app.HelpName = "step-ca"
	app.Usage = "an online certificate authority (p11enroll test build)"
	app.Version = "0.19.0 (Debian source, p11enroll tests)"
	app.UsageText = strings.ReplaceAll(commands.AppCommand.UsageText, "**", "")
	app.Flags = commands.AppCommand.Flags
	app.Action = commands.AppCommand.Action
	app.Writer = os.Stdout
	app.ErrWriter = os.Stderr
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "step-ca:", err)
		os.Exit(1)
	}
}
