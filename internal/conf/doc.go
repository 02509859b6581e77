// Package conf decodes VoltEdge's TOML configuration files strictly and
// reports every problem with the file, line, column and key it concerns:
//
//	config/templates/power_meter.toml:14:9: key "point[3].type": unknown type "int17"
//
// Decoding refuses unknown keys, values of the wrong type and syntax errors.
// The [Positions] index returned by [Decode] lets the caller report its own
// validation errors in the same form ([Positions.Errorf]) and tell whether a
// key was written at all ([Positions.Defined]), so that defaults can be told
// apart from explicit zero values.
//
// Key paths are written as in TOML, with a 0-based index after each element
// of an array of tables or of an inline array: "dtu.listen",
// "task[0].count", "thresholds.\"power_meter:voltage\"". The same path
// without indices ("task.count") names the first occurrence.
package conf
