# ctest script for examples/unet.cmake: eval and predict use the threshold that
# `unet train` chose on the validation slices and kept in the checkpoint.
#   -DUNET=<binary> -DRUN=<a finished training run's --out> -DIMAGE=<a png to predict>
function(run_unet out_var)
  execute_process(COMMAND ${UNET} ${ARGN} --threads 1 RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "unet ${ARGN} exited ${rc}\n${out}\n${err}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

file(READ ${RUN}/summary.json summary)
string(JSON chosen GET "${summary}" threshold)
string(JSON chosen_error GET "${summary}" pixel_error)
set(ckpt ${RUN}/checkpoint.safetensors)

# eval, by default at the stored threshold: the figures of training's last validation.
run_unet(out eval --ckpt ${ckpt})
string(REGEX MATCH "{[^\n]*}" json "${out}")
string(JSON used GET "${json}" threshold)
string(JSON used_error GET "${json}" pixel_error)
if(NOT used STREQUAL chosen OR NOT used_error STREQUAL chosen_error)
  message(FATAL_ERROR "eval scored at threshold ${used} (pixel error ${used_error}); training chose ${chosen} "
                      "(pixel error ${chosen_error})\n${out}")
endif()
if(chosen STREQUAL "0.5")
  message(FATAL_ERROR "training chose 0.5: this check cannot tell the stored threshold from the old default")
endif()
run_unet(out eval --ckpt ${ckpt} --threshold 0.5)
string(REGEX MATCH "{[^\n]*}" json "${out}")
string(JSON used GET "${json}" threshold)
if(NOT used EQUAL 0.5)
  message(FATAL_ERROR "eval --threshold 0.5 scored at ${used}")
endif()

# predict: the mask is cut at the stored threshold, unless --threshold says otherwise.
run_unet(out predict --ckpt ${ckpt} --input ${IMAGE} --out ${RUN}/threshold-default)
run_unet(out predict --ckpt ${ckpt} --input ${IMAGE} --out ${RUN}/threshold-chosen --threshold ${chosen})
run_unet(out predict --ckpt ${ckpt} --input ${IMAGE} --out ${RUN}/threshold-half --threshold 0.5)
get_filename_component(stem ${IMAGE} NAME_WE)
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${RUN}/threshold-default/${stem}-mask.png
                        ${RUN}/threshold-chosen/${stem}-mask.png RESULT_VARIABLE differ)
if(differ)
  message(FATAL_ERROR "predict's mask is not the mask at the stored threshold ${chosen}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${RUN}/threshold-default/${stem}-mask.png
                        ${RUN}/threshold-half/${stem}-mask.png RESULT_VARIABLE differ)
if(NOT differ)
  message(FATAL_ERROR "predict's mask equals the mask at 0.5: this check cannot tell them apart")
endif()
