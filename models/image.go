package models

// KindImage is the kind of a position that holds an image embedding
// instead of a token (a prompt with images, run with a vision projector).
// Such positions have negative ids: the engine that tokenized the prompt
// knows which embedding each stands for (see ImageVocab).
const KindImage TokenKind = "image"

// ImageRow says which embedding an image position holds: row Row of the
// Rows embeddings of part Part (of Parts) of the image read from Source.
// A vision projector may cut an image into several parts (slices of the
// picture and a downscaled overview), each a run of positions with text
// tokens between the runs.
type ImageRow struct {
	Source      string // the image file as the prompt names it
	Part, Parts int
	Row, Rows   int
}

// ImageVocab is a Vocab whose token sequences may hold image positions
// (negative ids). ImageRow returns what such an id stands for, and false
// for a token id.
type ImageVocab interface {
	Vocab
	ImageRow(id int32) (ImageRow, bool)
}
