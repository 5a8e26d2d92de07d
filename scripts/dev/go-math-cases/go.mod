module gomath
go 1.26
