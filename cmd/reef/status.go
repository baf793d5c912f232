package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

func runStatusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlags("status", "[--peer HOST:PORT] [--json]", stderr)
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, st)
	}
	alive := 0
	for _, m := range st.Members {
		if m.State == "alive" {
			alive++
		}
	}
	fmt.Fprintf(stdout, "volume %s  coding %d+%d  write quorum %d  seen from %s  %d of %d members alive\n",
		st.VolumeID, st.K, st.M, st.Quorum, st.Peer, alive, len(st.Members))
	if st.WritePeersNeeded > 0 && st.WritablePeers < st.WritePeersNeeded {
		fmt.Fprintf(stdout, "WRITES REFUSED: %d peers take new shards, a chunked file needs %d (k+1); only small files (kept in the namespace) can be written until more peers are back or have room\n",
			st.WritablePeers, st.WritePeersNeeded)
	}
	fmt.Fprintln(stdout)
	tw := newTable(stdout)
	fmt.Fprintln(tw, "PEER\tSTATE\tZONE\tADDRESS\tCAPACITY\tUSED\tFREE\tSHARDS\tLAST SEEN")
	for _, m := range st.Members {
		id := m.ID
		if m.Self {
			id += " *"
		}
		zone := m.Zone
		if zone == "" {
			zone = "-"
		}
		seen := "now"
		if m.State != "alive" && !m.LastSeen.IsZero() {
			seen = time.Since(m.LastSeen).Round(time.Second).String() + " ago"
		}
		state := m.State
		if m.Draining {
			state += " (draining)"
		}
		if m.Full {
			state += " (full)"
		}
		if m.ClockAheadSeconds > 0 {
			state += " (clock " + (time.Duration(m.ClockAheadSeconds) * time.Second).String() + " ahead)"
		}
		if m.Slow && !m.Full { // a full peer is passed over too
			state += " (slow)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", id, state, zone, m.DataAddr,
			humanBytes(m.Capacity), humanBytes(m.Used), humanBytes(m.Free), m.Shards, seen)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	r := st.Repair
	fmt.Fprintf(stdout, "\nmaintenance on %s: repair queue %d, rebuilt %d chunks (%s), moved %d shards; scrub %d/%d shards checked, %d corrupt\n",
		st.Peer, r.Queue, r.RepairedChunks, humanBytes(r.RepairedBytes), r.MovedShards, r.ScrubChecked, r.ScrubTotal, r.ScrubCorrupt)
	if r.GCOff {
		fmt.Fprintf(stdout, "space on %s: chunk collection off (--gc-grace 0); trash %d entries kept, %d purged\n", st.Peer, r.TrashEntries, r.TrashPurged)
	} else {
		fmt.Fprintf(stdout, "space on %s: %d chunks no file references wait for collection, %d shards (%s) collected; trash %d entries kept, %d purged\n",
			st.Peer, r.GCCandidates, r.GCDeletedShards, humanBytes(r.GCDeletedBytes), r.TrashEntries, r.TrashPurged)
	}
	if r.LastError != "" {
		fmt.Fprintf(stdout, "last maintenance error: %s\n", r.LastError)
	}
	return nil
}
