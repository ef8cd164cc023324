#version 330 core
// Mesh vertex shader. Camera space is OpenCV (x right, y down, z forward); u_proj maps it to clip
// space reproducing the intrinsics K exactly (see raster.projection_from_K). Compiled with the
// same feature defines as mesh.frag; VERTEX_SH evaluates the SH9 diffuse irradiance per vertex
// (single-sided materials without a normal map).
//#include common.glsl
in vec3 in_pos;
in vec3 in_normal;
in vec4 in_tangent;
in vec2 in_uv0;
in vec2 in_uv1;
in vec4 in_color;

uniform mat4 u_model;        // world from local
uniform mat3 u_normal_matrix; // inverse-transpose of u_model's 3x3
uniform mat4 u_view_model;   // OpenCV camera from local
uniform mat4 u_proj;         // clip from OpenCV camera

out vec3 v_world;
out vec3 v_normal;
out vec4 v_tangent;
out vec2 v_uv0;
#if HAS_UV1
out vec2 v_uv1;
#endif
#if HAS_VCOLOR
out vec4 v_color;
#endif
#if MODE == 4
out float v_depth;
#endif
#if VERTEX_SH
uniform vec3 u_sh[9];
uniform mat3 u_env_rot;
out vec3 v_irradiance;
#endif

void main() {
    vec4 w = u_model * vec4(in_pos, 1.0);
    vec4 c = u_view_model * vec4(in_pos, 1.0);
    v_world = w.xyz;
#if MODE == 4
    v_depth = c.z;
#endif
    v_normal = u_normal_matrix * in_normal;
    v_tangent = vec4(mat3(u_model) * in_tangent.xyz, in_tangent.w);
    v_uv0 = in_uv0;
#if HAS_UV1
    v_uv1 = in_uv1;
#endif
#if HAS_VCOLOR
    v_color = in_color;
#endif
#if VERTEX_SH
    v_irradiance = max(sh9(u_sh, u_env_rot * normalize(v_normal)), vec3(0.0));
#endif
    gl_Position = u_proj * c;
}
