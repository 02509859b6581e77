module github.com/voltedge/voltedge

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/redis/rueidis v1.0.79
	github.com/simonvetter/modbus v1.6.4
)

require (
	github.com/goburrow/serial v0.1.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
)
