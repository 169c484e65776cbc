package server

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"
)

// errBusy and errClosing are the refusals of gate.enter.
var (
	errBusy    = errors.New("the model is busy and the queue is full")
	errClosing = errors.New("the server is shutting down")
)

// gate lets one run at a time use the model and queues at most queue more,
// in arrival order (a channel's waiting senders are served first in,
// first out).
type gate struct {
	queue int
	turn  chan struct{} // holds a value while a run has the model

	mu      sync.Mutex
	pending int           // running + waiting
	closed  chan struct{} // closed once shutdown begins
	done    bool
	// mean is a running mean of run durations, for Retry-After.
	mean time.Duration
}

func newGate(queue int) *gate {
	return &gate{queue: queue, turn: make(chan struct{}, 1), closed: make(chan struct{}), mean: time.Second}
}

// enter waits for the model. It returns at once with errBusy when a run
// and queue others wait already, errClosing once the server shuts down,
// and ctx's error when ctx is done first. position is how many requests
// were ahead on arrival. On success the caller must call leave.
func (g *gate) enter(ctx context.Context, queued func(position int)) error {
	g.mu.Lock()
	if g.done {
		g.mu.Unlock()
		return errClosing
	}
	if g.pending > g.queue {
		g.mu.Unlock()
		return errBusy
	}
	pos := g.pending
	g.pending++
	g.mu.Unlock()
	if pos > 0 && queued != nil {
		queued(pos)
	}
	select {
	case g.turn <- struct{}{}:
		// shutdown may have begun while this request waited
		select {
		case <-g.closed:
			<-g.turn
			g.forget()
			return errClosing
		default:
			return nil
		}
	case <-ctx.Done():
		g.forget()
		return context.Cause(ctx)
	case <-g.closed:
		g.forget()
		return errClosing
	}
}

// leave gives the model back after a run of duration d.
func (g *gate) leave(d time.Duration) {
	<-g.turn
	g.mu.Lock()
	g.pending--
	g.mean = (3*g.mean + d) / 4
	g.mu.Unlock()
}

func (g *gate) forget() {
	g.mu.Lock()
	g.pending--
	g.mu.Unlock()
}

// retryAfter is the Retry-After of a refused request in whole seconds: the
// mean run time for each request ahead, at least 1.
func (g *gate) retryAfter() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.mean.Seconds() * float64(max(g.pending, 1))
	return int(min(math.Max(1, math.Ceil(s)), 3600))
}

// close refuses new and waiting requests; the running one goes on.
func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.done {
		g.done = true
		close(g.closed)
	}
}
