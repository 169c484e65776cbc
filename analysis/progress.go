package analysis

// Progress hears how far a long analysis is: Update(done) with done out of
// the total given to Start, then Done. A nil Progress hears nothing.
type Progress interface {
	Start(total int)
	Update(done int)
	Done()
}

// noProgress is the Progress of a nil option.
type noProgress struct{}

func (noProgress) Start(int)  {}
func (noProgress) Update(int) {}
func (noProgress) Done()      {}

func progressOr(p Progress) Progress {
	if p == nil {
		return noProgress{}
	}
	return p
}
