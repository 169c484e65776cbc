package contrast

// Samples is a row-major float32 matrix of N rows of width D: one hook's
// activations, one row per prompt (or per prompt and token position).
type Samples struct {
	N, D int
	Data []float32
	// Groups, when not nil, holds the group of every row: rows of one
	// group (the positions of one prompt) are left out together by the
	// held-out statistics, which would otherwise score a row against a
	// direction fitted to its neighbours.
	Groups []int
}

// NewSamples returns an empty matrix of width d with room for n rows.
func NewSamples(d, n int) *Samples {
	return &Samples{D: d, Data: make([]float32, 0, d*max(n, 0))}
}

// Append adds a copy of row. It panics if len(row) != s.D.
func (s *Samples) Append(row []float32) {
	if len(row) != s.D {
		panic("contrast: Samples.Append: row length does not match the width")
	}
	if s.Groups != nil {
		panic("contrast: Samples.Append after AppendGroup")
	}
	s.add(row)
}

func (s *Samples) add(row []float32) {
	s.Data = append(s.Data, row...)
	s.N++
}

// AppendGroup adds a copy of row as a member of group g. It panics if
// len(row) != s.D, or if rows were added without a group before.
func (s *Samples) AppendGroup(row []float32, g int) {
	if len(s.Groups) != s.N {
		panic("contrast: Samples.AppendGroup after Append")
	}
	if len(row) != s.D {
		panic("contrast: Samples.AppendGroup: row length does not match the width")
	}
	s.add(row)
	s.Groups = append(s.Groups, g)
}

// groups returns the row indices of each group, in order of first
// appearance; every row is its own group when s.Groups is nil.
func (s *Samples) groups() [][]int {
	if s.Groups == nil {
		out := make([][]int, s.N)
		for i := range out {
			out[i] = []int{i}
		}
		return out
	}
	idx := map[int]int{}
	var out [][]int
	for i, g := range s.Groups {
		k, ok := idx[g]
		if !ok {
			k = len(out)
			idx[g] = k
			out = append(out, nil)
		}
		out[k] = append(out[k], i)
	}
	return out
}

// Row returns row i, sharing memory with s. It panics if i is out of range.
func (s *Samples) Row(i int) []float32 {
	if i < 0 || i >= s.N {
		panic("contrast: Samples.Row: index out of range")
	}
	return s.Data[i*s.D : (i+1)*s.D : (i+1)*s.D]
}

// mean returns the column means of s in float64.
func (s *Samples) mean() []float64 {
	m := make([]float64, s.D)
	for i := range s.N {
		for j, v := range s.Row(i) {
			m[j] += float64(v)
		}
	}
	if s.N > 0 {
		inv := 1 / float64(s.N)
		for j := range m {
			m[j] *= inv
		}
	}
	return m
}

func to32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}
