package models

import "fmt"

// Activation is one captured activation: a [Rows, Width] float32 matrix in
// row-major order, one row per token.
type Activation struct {
	Hook  Hook
	Width int
	Data  []float32
}

// Rows returns the number of rows (tokens).
func (a *Activation) Rows() int {
	if a.Width == 0 {
		return 0
	}
	return len(a.Data) / a.Width
}

// Row returns row i, sharing memory with a. It panics if i is out of range.
func (a *Activation) Row(i int) []float32 {
	return a.Data[i*a.Width : (i+1)*a.Width : (i+1)*a.Width]
}

// Cache holds the activations of one prompt, keyed by hook.
type Cache struct {
	// Tokens are the prompt's token ids, one per activation row.
	Tokens []int32
	// NLayer is the model's layer count (for negative layer indices).
	NLayer int
	acts   map[Hook]*Activation
}

// NewCache returns an empty cache for a prompt.
func NewCache(tokens []int32, nLayer int) *Cache {
	return &Cache{Tokens: tokens, NLayer: nLayer, acts: map[Hook]*Activation{}}
}

// Set stores a, replacing any activation of the same hook.
func (c *Cache) Set(a *Activation) { c.acts[a.Hook] = a }

// At returns the activation of hook h.
func (c *Cache) At(h Hook) (*Activation, bool) {
	a, ok := c.acts[h]
	return a, ok
}

// Get returns the activation named by one full or short hook name
// ("blocks.3.hook_resid_post", "resid_post.3", "resid_post.-1").
func (c *Cache) Get(name string) (*Activation, error) {
	hs, err := ParseHook(name, c.NLayer)
	if err != nil {
		return nil, err
	}
	if len(hs) != 1 {
		return nil, fmt.Errorf("hook %q names %d activations; name one layer, for example %s", name, len(hs), hs[0].Short())
	}
	a, ok := c.acts[hs[0]]
	if !ok {
		return nil, fmt.Errorf("hook %s was not captured (captured: %d hooks); add it to --hooks", hs[0].Name(), len(c.acts))
	}
	return a, nil
}

// Hooks returns the captured hooks in model order.
func (c *Cache) Hooks() []Hook {
	hs := make([]Hook, 0, len(c.acts))
	for h := range c.acts {
		hs = append(hs, h)
	}
	return SortHooks(hs)
}
