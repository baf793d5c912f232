package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

func runHealthCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlags("health", "[--peer HOST:PORT] [--json] [PATH]   (PATH inside the volume, e.g. /photos)", stderr)
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("at most one PATH")
	}
	path := ""
	if len(pos) == 1 {
		path = pos[0]
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	h, err := cl.Health(ctx, path)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, h)
	}
	verdict := "HEALTHY: every chunk has all its shards"
	switch {
	case h.ChunksLost > 0:
		verdict = fmt.Sprintf("DATA LOST: %d chunks have fewer than k shards", h.ChunksLost)
	case h.ChunksDegraded > 0:
		verdict = fmt.Sprintf("DEGRADED: %d chunks are missing shards (%s at risk)", h.ChunksDegraded, humanBytes(h.BytesAtRisk))
	}
	fmt.Fprintf(stdout, "%s\n\n", verdict)
	tw := newTable(stdout)
	fmt.Fprintf(tw, "scope\t%s\n", h.Scope)
	fmt.Fprintf(tw, "files\t%d chunked, %d inline (small files kept in the namespace on every peer)\n", h.Files, h.InlineFiles)
	fmt.Fprintf(tw, "chunks\t%d total, %d healthy, %d degraded, %d lost\n", h.ChunksTotal, h.ChunksHealthy, h.ChunksDegraded, h.ChunksLost)
	fmt.Fprintf(tw, "bytes at risk\t%s\n", humanBytes(h.BytesAtRisk))
	var red string
	switch {
	case h.ChunksTotal == 0:
		red = "no chunks in scope (inline files live on every peer)"
	case h.MinRedundancy < 0:
		red = "none (data lost)"
	case h.MinRedundancy == 0:
		red = "none to spare: losing one more peer loses data"
	case h.MinRedundancy == 1:
		red = "every chunk survives the loss of 1 more peer"
	default:
		red = fmt.Sprintf("every chunk survives the loss of %d more peers", h.MinRedundancy)
	}
	fmt.Fprintf(tw, "lowest redundancy\t%s\n", red)
	r := h.Repair
	fmt.Fprintf(tw, "repair\tqueue %d, rebuilt %d chunks / %d shards / %s, moved %d shards\n", r.Queue, r.RepairedChunks, r.RepairedShards, humanBytes(r.RepairedBytes), r.MovedShards)
	tw.Flush()
	if len(h.Peers) > 0 {
		fmt.Fprintln(stdout)
		tw = newTable(stdout)
		fmt.Fprintln(tw, "PEER\tSTATE\tSHARDS\tBYTES\tLAST SEEN")
		for _, p := range h.Peers {
			state := p.State
			if p.Draining {
				state += " (draining)"
			}
			seen := "now"
			if p.State != "alive" {
				seen = time.Since(p.LastSeen).Round(time.Second).String() + " ago"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", p.ID, state, p.Shards, humanBytes(p.Bytes), seen)
		}
		tw.Flush()
	}
	if len(h.FileDetail) > 0 {
		fmt.Fprintln(stdout)
		tw = newTable(stdout)
		fmt.Fprintln(tw, "FILE\tSIZE\tCHUNKS\tHEALTHY\tDEGRADED\tLOST")
		for _, f := range h.FileDetail {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\n", f.Path, humanBytes(f.Size), f.Chunks, f.Healthy, f.Degraded, f.Lost)
		}
		tw.Flush()
	}
	if len(h.ChunkDetail) > 0 {
		fmt.Fprintln(stdout)
		tw = newTable(stdout)
		fmt.Fprintln(tw, "CHUNK\tKIND\tOFFSET\tLENGTH\tCODING\tSHARDS\tSTATE\tHOLDERS (peer: shard indexes)")
		for _, c := range h.ChunkDetail {
			var hs []string
			for p, idx := range c.Holders {
				hs = append(hs, fmt.Sprintf("%s:%v", p, idx))
			}
			sort.Strings(hs)
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d+%d\t%d/%d\t%s\t%s\n", c.Addr[:12], c.Kind, c.Offset, humanBytes(c.Length), c.K, c.M, c.Present, c.K+c.M, c.State, strings.Join(hs, " "))
		}
		tw.Flush()
	}
	for _, e := range h.Errors {
		fmt.Fprintf(stdout, "unreadable: %s\n", e)
	}
	return nil
}
