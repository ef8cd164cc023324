#version 330 core
// One screen-space quad per Gaussian (instanced): centre, 2D covariance (EWA) and colour come from
// the CPU, sorted back to front.
in vec2 in_corner;        // per vertex, in {-1, 1}^2
in vec2 in_center;        // pixel coordinates (OpenCV, centres at +0.5)
in float in_depth;        // camera z
in vec3 in_conic;         // inverse 2D covariance (a, b, c)
in float in_radius;       // pixels
in vec4 in_rgba;          // linear colour, opacity
uniform vec2 u_size;
uniform float u_near;
uniform float u_far;
out vec2 v_offset;
out vec3 v_conic;
out vec4 v_rgba;
void main() {
    vec2 off = in_corner * in_radius;
    vec2 px = in_center + off;
    float z = in_depth;
    float zc = (u_far + u_near) / (u_far - u_near) * z - 2.0 * u_far * u_near / (u_far - u_near);
    gl_Position = vec4((2.0 * px.x / u_size.x - 1.0) * z, (1.0 - 2.0 * px.y / u_size.y) * z, zc, z);
    v_offset = off;
    v_conic = in_conic;
    v_rgba = in_rgba;
}
