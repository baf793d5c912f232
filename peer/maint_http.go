package peer

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/reefproject/reef/api"
)

func (p *Peer) handleHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
	defer cancel()
	h, err := p.health(ctx, r.URL.Query().Get("path"))
	if err != nil {
		api.WriteError(w, statusFor(err), err)
		return
	}
	api.WriteJSON(w, h)
}

// handleRepair plans (apply=false) or starts (apply=true) a repair of a
// path; GET returns the progress of the last one started.
func (p *Peer) handleRepair(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		p.maint.mu.Lock()
		plan := p.maint.plan
		p.maint.mu.Unlock()
		api.WriteJSON(w, plan)
		return
	}
	dir := r.URL.Query().Get("path")
	apply, _ := strconv.ParseBool(r.URL.Query().Get("apply"))
	_, _, plan, err := p.maint.findWork(r.Context(), dir, true)
	if err != nil {
		api.WriteError(w, statusFor(err), err)
		return
	}
	if !apply {
		plan.Done = true
		api.WriteJSON(w, plan)
		return
	}
	plan.Apply = true
	p.maint.mu.Lock()
	p.maint.plan = plan
	p.maint.mu.Unlock()
	go func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-p.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		if err := p.maint.repair(ctx, dir, true); err != nil {
			p.log.Warn("repair", "err", err)
		}
	}()
	api.WriteJSON(w, plan)
}

// handleScrub starts a scrub pass at full speed (POST) or reports the
// current or last one (GET).
func (p *Peer) handleScrub(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		apply, _ := strconv.ParseBool(r.URL.Query().Get("apply"))
		p.maint.mu.Lock()
		running := p.maint.scrub.Running
		p.maint.mu.Unlock()
		if !running {
			started := make(chan struct{})
			go func() {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go func() {
					select {
					case <-p.stop:
						cancel()
					case <-ctx.Done():
					}
				}()
				close(started)
				p.maint.scrubPass(ctx, apply, 0)
			}()
			<-started
			time.Sleep(10 * time.Millisecond) // let it record its start
		}
	}
	p.maint.mu.Lock()
	res := p.maint.scrub
	p.maint.mu.Unlock()
	res.Peer = p.id
	api.WriteJSON(w, res)
}

// handleDrain starts draining this peer (POST) or reports progress (GET).
func (p *Peer) handleDrain(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		if err := p.maint.setDraining(); err != nil {
			api.WriteError(w, http.StatusInternalServerError, err)
			return
		}
	}
	p.maint.mu.Lock()
	st := api.DrainStatus{Peer: p.id, Draining: p.maint.draining, Moved: p.maint.drained}
	p.maint.mu.Unlock()
	st.Shards = p.bs.Stats().Count
	api.WriteJSON(w, st)
}
