// Package deploytest checks the deployment files of the repository without a
// cluster or Docker: the kustomize overlays (built in process, decoded
// strictly into the Kubernetes API types, then held to the project's
// policies), the Tiltfiles (evaluated under go.starlark.net with stand-ins
// for Tilt's builtins that declare Tilt's real parameter lists), the
// Dockerfiles and the development launcher.
package deploytest
