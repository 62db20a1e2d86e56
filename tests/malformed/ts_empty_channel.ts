@problemName Tiny
@classLabel true a b
@data
1,2,3:a
:b
