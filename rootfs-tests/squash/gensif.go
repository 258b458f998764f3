// gensif writes a SIF file around a SquashFS partition the way `apptainer build` does, with the
// SIF reference implementation (github.com/sylabs/sif, Debian's golang-github-sylabs-sif-dev):
// a definition file, a JSON labels object, an environment object and the partition, primary
// system, for amd64.
//
// Usage: gensif OUT.sif PARTITION.squashfs DEFFILE LABELS.json ENV.sh [FSTYPE]
// FSTYPE: squashfs (the default), ext3 or encrypted: the last two make SIFs gpurun refuses.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/sylabs/sif/v2/pkg/sif"
)

func object(t sif.DataType, path string, opts ...sif.DescriptorInputOpt) sif.DescriptorInput {
	f, err := os.Open(path)
	if err != nil {
		fail(err)
	}
	di, err := sif.NewDescriptorInput(t, f, opts...)
	if err != nil {
		fail(err)
	}
	return di
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gensif:", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 6 {
		fail(fmt.Errorf("usage: gensif OUT.sif PARTITION DEFFILE LABELS ENV [squashfs|ext3|encrypted]"))
	}
	fs := sif.FsSquash
	if len(os.Args) > 6 {
		switch os.Args[6] {
		case "ext3":
			fs = sif.FsExt3
		case "encrypted":
			fs = sif.FsEncryptedSquashfs
		}
	}
	when := time.Unix(1700000000, 0)
	dis := []sif.DescriptorInput{
		object(sif.DataDeffile, os.Args[3], sif.OptObjectTime(when)),
		object(sif.DataLabels, os.Args[4], sif.OptObjectTime(when)),
		object(sif.DataEnvVar, os.Args[5], sif.OptObjectTime(when)),
		object(sif.DataPartition, os.Args[2], sif.OptObjectTime(when), sif.OptObjectAlignment(4096),
			sif.OptPartitionMetadata(fs, sif.PartPrimSys, "amd64")),
	}
	f, err := sif.CreateContainerAtPath(os.Args[1], sif.OptCreateWithDescriptors(dis...),
		sif.OptCreateWithTime(when), sif.OptCreateWithLaunchScript("#!/usr/bin/env run-singularity\n"))
	if err != nil {
		fail(err)
	}
	if err := f.UnloadContainer(); err != nil {
		fail(err)
	}
}
