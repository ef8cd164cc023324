#version 330 core
// Environment as the background: each pixel's OpenCV ray through K^-1, rotated to world.
//#include common.glsl
uniform mat3 u_ray;        // world ray direction from homogeneous pixel (u, v, 1): R_c2w * K^-1
uniform float u_height;
uniform sampler2D u_env_spec;
uniform float u_lod;
uniform float u_env_intensity;
uniform mat3 u_env_rot;
uniform float u_alpha;     // 1 for windows/XR layers; 0 offscreen, so the alpha pass stays asset coverage
out vec4 o_color;
void main() {
    vec3 px = vec3(gl_FragCoord.x, u_height - gl_FragCoord.y, 1.0);
    vec3 d = normalize(u_ray * px);
    vec3 c = textureLod(u_env_spec, dir_to_equirect(u_env_rot * d), u_lod).rgb * u_env_intensity;
    o_color = vec4(linear_to_srgb(tonemap(c)), u_alpha);
}
